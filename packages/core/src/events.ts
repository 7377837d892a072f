/** A small typed event emitter: listeners that throw are isolated so one bad listener cannot break a call. */
export type Listener<T> = (event: T) => void;

export class Emitter<Events extends Record<string, unknown>> {
  private listeners = new Map<keyof Events, Set<Listener<never>>>();

  on<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => this.off(name, listener);
  }

  off<K extends keyof Events>(name: K, listener: Listener<Events[K]>): void {
    this.listeners.get(name)?.delete(listener as Listener<never>);
  }

  /** Cheap check so hot paths skip building event objects nobody listens to. */
  has(name: keyof Events): boolean {
    const set = this.listeners.get(name);
    return set !== undefined && set.size > 0;
  }

  emit<K extends keyof Events>(name: K, event: Events[K]): void {
    const set = this.listeners.get(name);
    if (!set) return;
    for (const listener of set) {
      try {
        (listener as Listener<Events[K]>)(event);
      } catch {
        // A listener's failure is the listener's problem, never the call's.
      }
    }
  }

  removeAll(): void {
    this.listeners.clear();
  }
}

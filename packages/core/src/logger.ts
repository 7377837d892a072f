/** The logging AMAS needs: a subset of console, pino and winston, so any of them can be passed. */
export interface Logger {
  warn(message: string, ...rest: unknown[]): void;
  error(message: string, ...rest: unknown[]): void;
}

export const consoleLogger: Logger = {
  warn: (m, ...r) => console.warn(`[amas] ${m}`, ...r),
  error: (m, ...r) => console.error(`[amas] ${m}`, ...r),
};

export const silentLogger: Logger = { warn() {}, error() {} };

import type { Amas } from '@amas/core';
import type { FastifyRequest } from 'fastify';

/** The engine a route handler serves with: the one it was given, else the `app.amas` the plugin decorated. */
export function engineOf(request: FastifyRequest, instance: Amas | undefined, name: string): Amas {
  const amas = instance ?? (request.server as { amas?: Amas }).amas;
  if (!amas) throw new Error(`${name}(): register the AMAS plugin first or pass an Amas instance`);
  return amas;
}

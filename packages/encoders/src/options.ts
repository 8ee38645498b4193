import { availableParallelism } from 'node:os';
import { MmInvalidArgumentError } from '@mm/errors';

/** Options shared by the native components of mm's vision path. */
export interface ComputeOptions {
  /** CPU threads for the graph (default: all cores). */
  threads?: number;
  /** Use the first GPU when mm.node was built with one (default true). */
  gpu?: boolean;
}

export function resolveThreads(threads: number | undefined): number {
  const t = threads ?? availableParallelism();
  if (!Number.isInteger(t) || t < 1 || t > 512) {
    throw new MmInvalidArgumentError('threads', `must be an integer in [1, 512], got ${String(t)}`);
  }
  return t;
}

export function resolveGpu(gpu: boolean | undefined): boolean {
  if (gpu !== undefined && typeof gpu !== 'boolean') {
    throw new MmInvalidArgumentError('gpu', 'must be a boolean');
  }
  return gpu ?? true;
}

export function checkPath(path: unknown, name = 'path'): string {
  if (typeof path !== 'string' || path.length === 0) {
    throw new MmInvalidArgumentError(name, 'must be a non-empty string');
  }
  return path;
}

// Shared handling of client-node informers.

import { ERROR, type Informer, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';

const RESTART_DELAY_MS = 1000;

// Restarts an informer after a watch error: client-node's informers stop
// on one, and a restart lists again, so no change is lost. stopped() tells
// when the owner has shut down and no restart is wanted.
export function restartOnError<T extends KubernetesObject>(informer: Informer<T>, log: Logger, what: string, stopped: () => boolean): void {
  informer.on(ERROR, (err) => {
    if (stopped()) return;
    log.warn({ err }, `${what} watch failed, restarting`);
    setTimeout(() => {
      if (!stopped()) void informer.start();
    }, RESTART_DELAY_MS);
  });
}

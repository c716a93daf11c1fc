// The server state that request handlers share.

import type { KindRegistry } from './kind-registry.js';
import type { DefaultingContext } from './resource-type.js';
import type { Store } from './store.js';

export interface ApiContext {
  store: Store;
  kinds: KindRegistry;
  defaulting: DefaultingContext;
}

// Options common to create, update, patch and delete.
export interface WriteOptions {
  // dryRun=All: run every check and return the result without storing it.
  dryRun: boolean;
}

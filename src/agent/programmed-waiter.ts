// A pending call of BackendCheck.waitProgrammed(), as the kube-proxy checks
// keep it until its frontends are programmed or its timeout passes.

import type { Frontend } from '../datapath/frontends.js';

export interface ProgrammedWaiter {
  frontends: Frontend[];
  resolve: (programmed: boolean) => void;
  timer: NodeJS.Timeout;
  onProgrammed: ((frontends: Frontend[]) => void) | undefined;
  // Frontends already passed to onProgrammed.
  reported: Set<Frontend>;
}

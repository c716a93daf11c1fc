// Chooses where chained mode reads Cilium's services: the pinned
// load-balancer maps when they exist and open, since they are what the
// datapath uses, and otherwise the Cilium agent's REST API until the maps
// are pinned.

import type { Logger } from 'pino';

import type { CiliumServiceSource } from './frontends.js';
import { CiliumRestServices } from './rest-services.js';
import { RestUntilPinned } from './rest-until-pinned.js';
import { CILIUM_PIN_DIR, CiliumServiceMaps, pinnedFamilies } from './service-maps.js';

export interface CiliumServiceSourceOptions {
  // Directory of Cilium's pinned maps. Defaults to /sys/fs/bpf/tc/globals.
  pinDir?: string;
  // Unix socket of the Cilium agent's API. Defaults to
  // /var/run/cilium/cilium.sock.
  socketPath?: string;
  // Poll interval of the maps in milliseconds. Defaults to 250.
  mapsPollMs?: number;
  // Poll interval of the REST API in milliseconds. Defaults to 1000.
  restPollMs?: number;
  // While on the REST API, how often to look for the pinned maps, in
  // milliseconds. Defaults to 10,000.
  pinCheckMs?: number;
  log: Logger;
}

// Opens and starts a source, and logs which one. Falls back to the REST
// API when no services map is pinned or the maps cannot be opened, for
// example without CAP_BPF or with another Cilium version's layout. Rejects
// when the REST API's first read fails too, with both reasons.
export async function openCiliumServiceSource(options: CiliumServiceSourceOptions): Promise<CiliumServiceSource> {
  const pinDir = options.pinDir ?? CILIUM_PIN_DIR;
  const log = options.log;

  let mapsFailure: string;
  if (pinnedFamilies(pinDir).length > 0) {
    let maps: CiliumServiceMaps | undefined;
    try {
      maps = new CiliumServiceMaps({ pinDir, pollMs: options.mapsPollMs, log });
      maps.start();
      log.info({ source: 'maps', pinDir, families: maps.families, frontends: maps.frontends().length }, 'reading Cilium services from its pinned maps');
      return maps;
    } catch (err) {
      maps?.close();
      mapsFailure = (err as Error).message;
      log.warn({ err, pinDir }, 'cannot read Cilium service maps, falling back to the Cilium agent API');
    }
  } else {
    mapsFailure = `no Cilium service map is pinned in ${pinDir}`;
    log.info({ pinDir }, 'Cilium service maps are not pinned, reading services from the Cilium agent API');
  }

  const rest = new CiliumRestServices({ socketPath: options.socketPath, pollMs: options.restPollMs, log });
  try {
    await rest.start();
  } catch (err) {
    rest.close();
    throw new Error(`cannot read Cilium's services: ${mapsFailure}, and ${(err as Error).message}`, { cause: err });
  }
  log.info({ source: 'rest', socketPath: rest.socketPath, frontends: rest.frontends().length }, 'reading Cilium services from the Cilium agent API');
  return new RestUntilPinned({ rest, pinDir, mapsPollMs: options.mapsPollMs, checkIntervalMs: options.pinCheckMs, log });
}

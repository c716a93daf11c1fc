// The BPF filesystem that pinned maps and programs live in. Most
// distributions mount it at /sys/fs/bpf at boot, but a container or a
// minimal VM may leave it unmounted, and then every pin fails. Like
// Cilium's agent, zerohold mounts it when it is missing.

import { execFileSync } from 'node:child_process';
import { statfsSync } from 'node:fs';

export const BPFFS_ROOT = '/sys/fs/bpf';

// BPF_FS_MAGIC from linux/magic.h.
const BPF_FS_MAGIC = 0xcafe4a11;

export function isBpffs(path: string): boolean {
  try {
    return statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

// Mounts bpffs at /sys/fs/bpf unless it is mounted there already. Needs
// CAP_SYS_ADMIN in the mount namespace.
export function ensureBpffs(): void {
  if (isBpffs(BPFFS_ROOT)) return;
  try {
    execFileSync('mount', ['-t', 'bpf', 'bpf', BPFFS_ROOT], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`${BPFFS_ROOT} is not a BPF filesystem and mounting one failed (${stderr || (err as Error).message}); mount it with "mount -t bpf bpf ${BPFFS_ROOT}" or mount the host's /sys/fs/bpf into the container`);
  }
  if (!isBpffs(BPFFS_ROOT)) throw new Error(`mounted bpffs at ${BPFFS_ROOT}, but it still does not report the BPF filesystem type`);
}

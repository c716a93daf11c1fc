// Locations inside the checkout, resolved from this module's own path so
// they hold however the process was started. Compiled, this file is
// dist/src/paths.js.

import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

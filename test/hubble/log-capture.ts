// A pino logger whose records a test can read back as objects.

import { pino, type Logger } from 'pino';

export interface CapturedLog {
  logger: Logger;
  records: Record<string, unknown>[];
}

export function captureLog(level: pino.Level = 'debug'): CapturedLog {
  const records: Record<string, unknown>[] = [];
  const destination = { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) };
  return { logger: pino({ level }, destination), records };
}

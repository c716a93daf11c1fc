// Structured logs with pino. Each component logs through a child logger
// that carries its name, and ids go in fields, so a log pipeline can filter
// on component and workload without parsing messages. Nothing is logged per
// packet: the datapath counts, and the agent logs state changes.

import { pino, type Logger } from 'pino';

export type Component = 'activity' | 'agent' | 'api' | 'controller' | 'datapath' | 'leader' | 'readiness' | 'events' | 'metrics';

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LEVELS)[number];

// Parses the value of the environment variable named by `variable`, and
// returns fallback when it is unset or empty. The error names the variable.
export function parseLogLevel(value: string | undefined, fallback: LogLevel = 'info', variable = 'ZEROHOLD_LOG_LEVEL'): LogLevel {
  if (value === undefined || value === '') return fallback;
  if ((LEVELS as readonly string[]).includes(value)) return value as LogLevel;
  throw new RangeError(`invalid ${variable} ${JSON.stringify(value)}: expected one of ${LEVELS.join(', ')}, or unset for ${fallback}`);
}

export function createLogger(level: LogLevel, nodeName: string, destination?: NodeJS.WritableStream): Logger {
  return pino({ level, base: { node: nodeName }, timestamp: pino.stdTimeFunctions.isoTime }, destination ?? process.stdout);
}

export function componentLogger(root: Logger, component: Component): Logger {
  return root.child({ component });
}

// Structured logs: one JSON object a line, with secrets redacted wherever they might appear.
import { pino, type Logger } from 'pino';

export function createLogger(level: string, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino(
    {
      level,
      base: { app: 'shoal' },
      redact: {
        paths: ['password', '*.password', 'bmcPassword', '*.bmcPassword', 'token', '*.token', 'authorization', '*.headers.authorization'],
        censor: '[redacted]',
      },
    },
    destination,
  );
}

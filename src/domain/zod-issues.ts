// One way to tell an operator what a schema refused, wherever input is validated: the API's
// problem details, the config file, inventory rows, agent reports. One line per issue, the field's
// dotted path first (`macs.0: a MAC is six hex pairs`); an issue about the whole input is its message.
import type { z } from 'zod';

export function formatZodIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.map(String).join('.');
    return path ? `${path}: ${issue.message}` : issue.message;
  });
}

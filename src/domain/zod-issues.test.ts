// The one formatting of schema issues: dotted paths, one line each, the bare message at the top.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { formatZodIssues } from './zod-issues.js';

const Schema = z.object({ name: z.string().min(1, 'a name is needed'), macs: z.array(z.string().regex(/^[0-9a-f:]+$/, 'not a MAC')) }).strict();

describe('formatZodIssues', () => {
  it('names each field by its dotted path, array indices included, one line per issue', () => {
    const result = Schema.safeParse({ name: '', macs: ['aa:00', 'zz'] });
    expect(result.success).toBe(false);
    expect(formatZodIssues(result.error!)).toEqual(['name: a name is needed', 'macs.1: not a MAC']);
  });

  it('gives an issue about the input as a whole as its message alone', () => {
    const result = Schema.safeParse({ name: 'n', macs: [], colour: 'red' });
    expect(formatZodIssues(result.error!)).toEqual(['Unrecognized key: "colour"']);
  });
});

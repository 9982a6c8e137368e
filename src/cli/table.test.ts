// The one column formatter of the CLI's listings.
import { afterEach, describe, expect, it } from 'vitest';
import { formatColumns } from './table.js';

const isTTY = process.stdout.isTTY;
afterEach(() => {
  process.stdout.isTTY = isTTY;
});

describe('formatColumns', () => {
  it('pads each column to its widest cell, two spaces apart, with no trailing blanks', () => {
    process.stdout.isTTY = false;
    expect(formatColumns(['NODE', 'PHASE', 'REASON'], [['n1', 'converged', ''], ['node-long', 'failed', 'BMC silent']])).toBe(
      ['NODE       PHASE      REASON', 'n1         converged', 'node-long  failed     BMC silent'].join('\n'),
    );
  });

  it('colours the chosen column of the rows (not the header) by the phase each cell stands for, on a terminal', () => {
    process.stdout.isTTY = true;
    const text = formatColumns(['ROLLOUT', 'STATUS'], [['r1', 'done']], { column: 1, phaseOf: (cell) => (cell === 'done' ? 'converged' : '') });
    expect(text.split('\n')).toEqual(['ROLLOUT  STATUS', 'r1       \x1b[32mdone  \x1b[0m']);
  });
});

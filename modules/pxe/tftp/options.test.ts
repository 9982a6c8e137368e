// Option negotiation for reads: what goes into the OACK, what is ignored and why, and the bounds
// of RFC 2348 (blksize), 2349 (timeout, tsize) and 7440 (windowsize).
import { describe, expect, it } from 'vitest';
import type { TftpOption } from './codec.js';
import { describeIgnored, negotiateOptions } from './options.js';

const limits = { maxBlockSize: 1468, maxWindowSize: 16 };
const opts = (...pairs: [string, string][]): TftpOption[] => pairs.map(([name, value]) => ({ name, value }));

describe('option negotiation', () => {
  it('answers no options with no OACK: a plain RFC 1350 transfer of 512-byte blocks, one at a time', () => {
    expect(negotiateOptions([], limits, 1000)).toEqual({ accepted: [], ignored: [], blockSize: 512, windowSize: 1 });
  });

  it("answers OVMF's request (tsize 0, blksize 1468, windowsize 4) with the size, in the client's order", () => {
    const result = negotiateOptions(opts(['tsize', '0'], ['blksize', '1468'], ['windowsize', '4']), limits, 8388608);
    expect(result.accepted).toEqual(opts(['tsize', '8388608'], ['blksize', '1468'], ['windowsize', '4']));
    expect(result).toMatchObject({ blockSize: 1468, windowSize: 4, ignored: [] });
  });

  it("answers BIOS iPXE's request (blksize 1432, tsize 0)", () => {
    const result = negotiateOptions(opts(['blksize', '1432'], ['tsize', '0']), limits, 70000);
    expect(result.accepted).toEqual(opts(['blksize', '1432'], ['tsize', '70000']));
    expect(result.blockSize).toBe(1432);
  });

  describe('blksize (RFC 2348: 8 to 65464)', () => {
    it('accepts both ends of the range', () => {
      expect(negotiateOptions(opts(['blksize', '8']), limits, 0).blockSize).toBe(8);
      expect(negotiateOptions(opts(['blksize', '65464']), { maxBlockSize: 65464, maxWindowSize: 1 }, 0).blockSize).toBe(65464);
    });

    it('lowers a size above our limit to the limit, and says so in the OACK', () => {
      const result = negotiateOptions(opts(['blksize', '65464']), limits, 0);
      expect(result.blockSize).toBe(1468);
      expect(result.accepted).toEqual(opts(['blksize', '1468']));
    });

    it('ignores sizes outside the range, leaving the default 512', () => {
      for (const value of ['7', '0', '65465', '100000']) {
        const result = negotiateOptions(opts(['blksize', value]), limits, 0);
        expect(result.blockSize, value).toBe(512);
        expect(result.accepted, value).toEqual([]);
        expect(result.ignored, value).toEqual([{ name: 'blksize', value, reason: 'blksize must be 8..65464' }]);
      }
    });
  });

  describe('windowsize (RFC 7440: 1 to 65535)', () => {
    it('accepts 1 and values up to our cap, lowering larger ones to it', () => {
      expect(negotiateOptions(opts(['windowsize', '1']), limits, 0)).toMatchObject({ windowSize: 1, accepted: opts(['windowsize', '1']) });
      expect(negotiateOptions(opts(['windowsize', '16']), limits, 0).windowSize).toBe(16);
      expect(negotiateOptions(opts(['windowsize', '65535']), limits, 0)).toMatchObject({ windowSize: 16, accepted: opts(['windowsize', '16']) });
    });

    it('ignores 0 and values past 65535', () => {
      for (const value of ['0', '65536']) {
        const result = negotiateOptions(opts(['windowsize', value]), limits, 0);
        expect(result).toMatchObject({ windowSize: 1, accepted: [] });
        expect(result.ignored[0]?.reason).toBe('windowsize must be 1..65535');
      }
    });
  });

  describe('timeout (RFC 2349: 1 to 255 seconds)', () => {
    it('accepts 1 and 255 and gives the retransmission interval in milliseconds', () => {
      expect(negotiateOptions(opts(['timeout', '1']), limits, 0)).toMatchObject({ timeoutMs: 1000, accepted: opts(['timeout', '1']) });
      expect(negotiateOptions(opts(['timeout', '255']), limits, 0).timeoutMs).toBe(255_000);
    });

    it('ignores 0 and 256, leaving the server its own interval', () => {
      for (const value of ['0', '256']) {
        const result = negotiateOptions(opts(['timeout', value]), limits, 0);
        expect(result.timeoutMs).toBeUndefined();
        expect(result.ignored[0]?.reason).toBe('timeout must be 1..255 seconds');
      }
    });
  });

  describe('tsize (RFC 2349)', () => {
    it('answers any decimal request with the real size, 0 included', () => {
      expect(negotiateOptions(opts(['tsize', '0']), limits, 0).accepted).toEqual(opts(['tsize', '0']));
      expect(negotiateOptions(opts(['tsize', '12345']), limits, 8).accepted).toEqual(opts(['tsize', '8']));
    });
  });

  it('ignores anything that is not a plain decimal number', () => {
    for (const value of ['', '-1', '+4', '1e3', ' 512', '512 ', '0x200', '1.5', '12345678901']) {
      const result = negotiateOptions(opts(['blksize', value], ['tsize', value]), limits, 10);
      expect(result.accepted, JSON.stringify(value)).toEqual([]);
      expect(result.ignored.map((o) => o.name), JSON.stringify(value)).toEqual(['blksize', 'tsize']);
    }
  });

  it('ignores unknown options (RFC 2347) without refusing the others', () => {
    const result = negotiateOptions(opts(['multicast', ''], ['blksize', '1024'], ['rollover', '0'], ['x-vendor', '1']), limits, 0);
    expect(result.accepted).toEqual(opts(['blksize', '1024']));
    expect(result.ignored).toEqual([
      { name: 'multicast', value: '', reason: 'unknown option' },
      { name: 'rollover', value: '0', reason: 'unknown option' },
      { name: 'x-vendor', value: '1', reason: 'unknown option' },
    ]);
  });

  it('describes what a request had ignored in one bounded line, clipping long names and values', () => {
    const { ignored } = negotiateOptions(opts(['timeout', '0'], ['x'.repeat(5000), 'y'.repeat(5000)]), limits, 0);
    expect(describeIgnored(ignored)).toBe(`2 options ignored: timeout=0 (timeout must be 1..255 seconds), ${'x'.repeat(32)}…=${'y'.repeat(32)}… (unknown option)`);
  });
});

// The seeded fuzzing kit shared by the fuzz tests beside each parser (a few thousand inputs in
// CI) and `npm run fuzz` (millions, outside CI): one generator per target, so both run the same
// inputs. A target answers each input "accepted" or "refused" (the parser's own typed error);
// anything else it throws is a crash, reported with the seed and input number that reproduce it.

/** mulberry32: small, fast, and the same sequence on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Gen {
  constructor(readonly next: () => number) {}
  int(max: number): number {
    return Math.floor(this.next() * max);
  }
  bool(): boolean {
    return this.next() < 0.5;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(length: number): Buffer {
    const b = Buffer.alloc(length);
    for (let i = 0; i < length; i++) b[i] = this.int(256);
    return b;
  }
  /** Printable ASCII. */
  text(min: number, max: number): string {
    const length = min + this.int(max - min + 1);
    let s = '';
    for (let i = 0; i < length; i++) s += String.fromCharCode(0x20 + this.int(0x5f));
    return s;
  }
  /** A string that may hold anything: controls, NUL, lone surrogates, astral characters. */
  anyString(max: number): string {
    const length = this.int(max + 1);
    let s = '';
    for (let i = 0; i < length; i++) {
      s += this.chance(0.8) ? String.fromCharCode(0x20 + this.int(0x5f)) : String.fromCharCode(this.int(0x10000));
    }
    return s;
  }
  /** Bytes with a few bits flipped, bytes overwritten, inserted, cut or the tail dropped. */
  mutateBytes(input: Buffer): Buffer {
    let b = Buffer.from(input);
    const rounds = 1 + this.int(4);
    for (let r = 0; r < rounds; r++) {
      switch (this.int(5)) {
        case 0:
          if (b.length > 0) b[this.int(b.length)]! ^= 1 << this.int(8);
          break;
        case 1:
          if (b.length > 0) b[this.int(b.length)] = this.pick([0, 0xff, 0x7f, 0x80, this.int(256)]);
          break;
        case 2: {
          const at = this.int(b.length + 1);
          b = Buffer.concat([b.subarray(0, at), this.bytes(1 + this.int(8)), b.subarray(at)]);
          break;
        }
        case 3: {
          const at = this.int(b.length + 1);
          b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + this.int(8))]);
          break;
        }
        case 4:
          b = b.subarray(0, this.int(b.length + 1));
          break;
      }
    }
    return b;
  }
}

/** A value no JSON schema expects where a field is: the wrong type, empty, huge, nested. */
export function oddJsonValue(g: Gen, depth = 0): unknown {
  switch (g.int(12)) {
    case 0:
      return null;
    case 1:
      return g.bool();
    case 2:
      return g.pick([0, -1, 1.5, 1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, 2 ** 31, -0]);
    case 3:
      return '';
    case 4:
      return g.anyString(40);
    case 5:
      return 'x'.repeat(g.pick([1000, 70_000]));
    case 6:
      return depth > 3 ? [] : Array.from({ length: g.int(4) }, () => oddJsonValue(g, depth + 1));
    case 7:
      return depth > 3 ? {} : Object.fromEntries(Array.from({ length: g.int(4) }, () => [g.pick(['__proto__', 'constructor', 'toString', g.text(0, 8)]), oddJsonValue(g, depth + 1)]));
    case 8:
      return { '@odata.id': g.pick(['', '/', 'http://other.example/x', '//evil/x', g.anyString(20)]) };
    case 9:
      return [null];
    case 10:
      return g.text(1, 12);
    default:
      return g.int(1000);
  }
}

/**
 * Mutates a JSON value: replaces, removes or adds fields at any depth, with odd values.
 * The input is not changed; a mutated copy is returned.
 */
export function mutateJson(g: Gen, value: unknown, depth = 0): unknown {
  if (depth > 0 && g.chance(0.1)) return oddJsonValue(g, depth);
  if (Array.isArray(value)) {
    const items = value.map((item) => (g.chance(0.3) ? mutateJson(g, item, depth + 1) : item));
    if (g.chance(0.1)) items.push(oddJsonValue(g, depth + 1));
    if (g.chance(0.1)) items.splice(g.int(items.length + 1), 1);
    return items;
  }
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(value)) {
      if (g.chance(0.05)) continue; // dropped
      out[key] = g.chance(0.3) ? mutateJson(g, field, depth + 1) : field;
    }
    if (g.chance(0.1)) out[g.pick(['__proto__', 'extra', g.text(1, 10)])] = oddJsonValue(g, depth + 1);
    return out;
  }
  return g.chance(0.5) ? oddJsonValue(g, depth) : value;
}

/** JSON text, sometimes broken: truncated, doubled, with bytes changed. */
export function jsonText(g: Gen, value: unknown): string {
  const text = JSON.stringify(value) ?? 'null';
  if (!g.chance(0.1)) return text;
  return g.mutateBytes(Buffer.from(text)).toString('utf8');
}

export type Outcome = 'accepted' | 'refused';

export interface FuzzSession {
  /** One input from `g`: what the parser did with it. Throws only on a crash. */
  one(g: Gen): Outcome | Promise<Outcome>;
  close(): Promise<void>;
}

export interface FuzzTarget {
  name: string;
  open(): Promise<FuzzSession>;
}

export interface FuzzStats {
  target: string;
  inputs: number;
  refused: number;
  accepted: number;
  crashes: number;
  /** The first few crashes, each with the input number that reproduces it under the same seed. */
  crashReports: string[];
  ms: number;
}

/**
 * Runs `inputs` inputs of a target from `seed`; input i always gets the same generator
 * state, so a crash at i reproduces with `--seed S --from i`. Stops early after `maxMs`.
 */
export async function runFuzzTarget(target: FuzzTarget, options: { inputs: number; seed: number; maxMs?: number; from?: number }): Promise<FuzzStats> {
  const session = await target.open();
  const stats: FuzzStats = { target: target.name, inputs: 0, refused: 0, accepted: 0, crashes: 0, crashReports: [], ms: 0 };
  const started = performance.now();
  try {
    for (let i = options.from ?? 0; i < (options.from ?? 0) + options.inputs; i++) {
      if (options.maxMs !== undefined && (i & 63) === 0 && performance.now() - started > options.maxMs) break;
      // Each input seeds its own generator, so one input's draws never shift the next's.
      const g = new Gen(prng(Math.imul(options.seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(i, 0xc2b2ae35)));
      stats.inputs++;
      try {
        const outcome = await session.one(g);
        stats[outcome]++;
      } catch (error) {
        stats.crashes++;
        if (stats.crashReports.length < 5) stats.crashReports.push(`input ${i} (seed ${options.seed}): ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      }
    }
  } finally {
    await session.close();
  }
  stats.ms = Math.round(performance.now() - started);
  return stats;
}

/** Wraps a parse: its own typed errors are "refused", anything else is rethrown as a crash. */
export function classify(run: () => unknown, typed: (error: unknown) => boolean): Outcome {
  try {
    run();
    return 'accepted';
  } catch (error) {
    if (typed(error)) return 'refused';
    throw error;
  }
}

export async function classifyAsync(run: () => Promise<unknown>, typed: (error: unknown) => boolean): Promise<Outcome> {
  try {
    await run();
    return 'accepted';
  } catch (error) {
    if (typed(error)) return 'refused';
    throw error;
  }
}

import { describe, expect, it } from 'vitest';
import type { Hardware } from '../contracts/hardware.js';
import { ValidationError } from './errors.js';
import { parseSelector } from './selector.js';

const GIB = 1024 ** 3;
const hardware = (memoryGib: number, disksGib: number[], firmware: 'bios' | 'uefi' = 'uefi'): Hardware => ({
  firmware,
  system: { vendor: 'Dell Inc.', product: 'PowerEdge R650', serial: '', uuid: '' },
  cpu: { model: 'Xeon', sockets: 2, cores: 32, threads: 64 },
  memoryBytes: memoryGib * GIB,
  disks: disksGib.map((size, i) => ({ name: `sd${'abc'[i]}`, sizeBytes: size * GIB, model: '', serial: '', wwn: '', rotational: false, removable: false })),
  nics: [],
});

const big = { labels: { rack: 'r1', role: 'compute' }, hardware: hardware(512, [480, 3840]) };
const small = { labels: { rack: 'r1', role: 'login' }, hardware: hardware(32, [240], 'bios') };
const silent = { labels: { rack: 'r2', role: 'compute' } };
const names = new Map<object, string>([[big, 'big'], [small, 'small'], [silent, 'silent']]);
const selected = (raw: string) => [big, small, silent].filter(parseSelector(raw)).map((n) => names.get(n));

describe('node selectors', () => {
  it('selects by labels with = and !=, every term at once', () => {
    expect(selected('rack=r1')).toEqual(['big', 'small']);
    expect(selected('rack=r1,role!=login')).toEqual(['big']);
    expect(selected('')).toEqual(['big', 'small', 'silent']);
    expect(parseSelector('rack=r1').usesHardware).toBe(false);
  });

  it('selects by reported hardware, with sizes in IEC units; a node that never reported matches no hardware term', () => {
    expect(selected('hw.memory>=64Gi')).toEqual(['big']);
    expect(selected('hw.memory<64Gi')).toEqual(['small']);
    expect(selected('hw.disks>=2,role=compute')).toEqual(['big']);
    expect(selected('hw.disk.size>1Ti')).toEqual(['big']);
    expect(selected('hw.firmware=bios')).toEqual(['small']);
    expect(selected('hw.firmware!=bios')).toEqual(['big']);
    expect(selected('hw.cpu.threads=64')).toEqual(['big', 'small']);
    expect(selected(`hw.memory=${32 * GIB}`)).toEqual(['small']);
    expect(parseSelector('hw.memory>=64Gi').usesHardware).toBe(true);
  });

  it('refuses a term it cannot read, saying what would do', () => {
    const refusal = (raw: string) => {
      try {
        parseSelector(raw);
      } catch (err) {
        expect(err).toBeInstanceOf(ValidationError);
        return (err as Error).message;
      }
      throw new Error(`"${raw}" was accepted`);
    };
    expect(refusal('rack')).toMatch(/"rack" is not key=value/);
    expect(refusal('rack>=2')).toMatch(/labels compare with = or != only/);
    expect(refusal('hw.ram>=1Gi')).toMatch(/no hardware field "ram"; use one of hw\.memory, /);
    expect(refusal('hw.memory>=64GB')).toMatch(/a size in bytes or with Ki, Mi, Gi or Ti/);
    expect(refusal('hw.cpu.threads>=2Gi')).toMatch(/a whole number/);
    expect(refusal('hw.vendor>=Dell')).toMatch(/is text, compared with = or != only/);
  });
});

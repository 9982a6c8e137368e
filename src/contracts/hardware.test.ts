import { describe, expect, it } from 'vitest';
import { HardwareSchema, describeHardware, parseHardware, type Hardware } from './hardware.js';

const GIB = 1024 ** 3;
const server: Hardware = {
  firmware: 'uefi',
  system: { vendor: 'Dell Inc.', product: 'PowerEdge R650', serial: 'ABC1234', uuid: '4c4c4544-0042' },
  cpu: { model: 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz', sockets: 2, cores: 64, threads: 128 },
  memoryBytes: 512 * GIB,
  disks: [{ name: 'nvme0n1', sizeBytes: 1920 * GIB, model: 'Dell Ent NVMe', serial: 'S6X0', wwn: 'eui.36', rotational: false, removable: false }],
  nics: [
    { name: 'eno1', mac: '3c:ec:ef:01:02:03', speedMbps: 25000, driver: 'ice' },
    { name: 'eno2', mac: '3c:ec:ef:01:02:04', speedMbps: 0, driver: 'ice' },
  ],
};

describe('hardware reports', () => {
  it('reads back what was recorded, and nothing that is not a report', () => {
    expect(parseHardware(JSON.stringify(server))).toEqual(server);
    expect(parseHardware(undefined)).toBeUndefined();
    expect(parseHardware('{not json')).toBeUndefined();
    expect(parseHardware(JSON.stringify({ ...server, extra: 1 }))).toBeUndefined();
  });

  it('refuses text a vendor string could use to break a line or a document', () => {
    for (const product of ['R650"', 'R650\n', '<script>', 'a'.repeat(129)]) {
      expect(HardwareSchema.safeParse({ ...server, system: { ...server.system, product } }).success, JSON.stringify(product)).toBe(false);
    }
    expect(HardwareSchema.safeParse({ ...server, disks: [{ ...server.disks[0]!, name: '../sda' }] }).success).toBe(false);
  });

  it('describes a machine in one line per part', () => {
    expect(describeHardware(server)).toEqual([
      'system   Dell Inc. PowerEdge R650, serial ABC1234, booted UEFI',
      'cpu      Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz: 2 sockets, 64 cores, 128 threads',
      'memory   512.0 GiB',
      'nic      eno1 3c:ec:ef:01:02:03 25000 Mb/s ice',
      'nic      eno2 3c:ec:ef:01:02:04 (no link speed) ice',
      'disk     nvme0n1 1920.0 GiB (Dell Ent NVMe, serial S6X0, wwn eui.36, solid-state)',
    ]);
  });
});

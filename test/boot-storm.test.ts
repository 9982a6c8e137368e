// The boot-storm benchmark at a tiny size (4 clients, 2 MiB root, one round): every client of both
// stacks, the appliance and dnsmasq + nginx, gets through DHCP, TFTP, its script, kernel, initrd
// and root, with every byte it received equal to the generated files. Needs root, ip, ss, dnsmasq
// and nginx; skipped with the reason otherwise.
import { describe, expect, it } from 'vitest';
import { requirements, skipUnless } from './support/environment.js';
import { runBootStorm, STAGES } from '../bench/boot-storm/run.js';

const skip = skipUnless('boot-storm benchmark', requirements({ root: true, commands: ['ip', 'ss', 'dnsmasq', 'nginx'] }));

describe.skipIf(skip)('bench:boot-storm at a tiny size', () => {
  it('boots every client of both stacks with verified bytes', { timeout: 180_000 }, async () => {
    const report = await runBootStorm({ clients: 4, rootMb: 2, rounds: 1 });
    const { loader, kernel, initrd, root } = report.files;
    expect(report.runs.map((r) => r.stack)).toEqual(['shoal', 'dnsmasq+nginx']);
    for (const run of report.runs) {
      expect(run.clients.map((c) => c.failure ?? 'ok'), run.stack).toEqual(['ok', 'ok', 'ok', 'ok']);
      for (const client of run.clients) {
        expect(client.verifiedBytes, `${run.stack} ${client.mac}`).toBe(loader + kernel + initrd + root);
        expect(Object.keys(client.stages)).toEqual([...STAGES]);
      }
      expect(run.failures).toBe(0);
      expect(run.totalMs).toBeGreaterThan(0);
    }
  });
});

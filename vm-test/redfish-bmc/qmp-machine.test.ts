// The QMP machine against a real QEMU with no guest (`-machine none`): enough to check
// the QMP conversation, power state, restarts for a boot override, and quit.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { requirements, skipUnless } from '../../test/support/environment.js';
import { noBootOverride, type BootOverride } from './machine.js';
import { QmpMachine } from './qmp-machine.js';

const qemu = requirements({ commands: ['qemu-system-x86_64'] });

describe.skipIf(skipUnless('QMP machine with QEMU', qemu))('QmpMachine', () => {
  const children: ChildProcess[] = [];
  let dir = '';
  afterEach(async () => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function machineWithQemu(): Promise<{ machine: QmpMachine; starts: BootOverride[] }> {
    dir = await mkdtemp(join(tmpdir(), 'qmp-machine-'));
    const qmpSocketPath = join(dir, 'qmp.sock');
    const starts: BootOverride[] = [];
    const machine = new QmpMachine({
      qmpSocketPath,
      startQemu: async (bootOverride) => {
        starts.push(bootOverride);
        const args = ['-machine', 'none', '-nodefaults', '-display', 'none', '-qmp', `unix:${qmpSocketPath},server=on,wait=off`];
        children.push(spawn('qemu-system-x86_64', args, { stdio: 'ignore' }));
      },
    });
    return { machine, starts };
  }

  it('is off with no QEMU, starts QEMU to power on, and quits it to force off', async () => {
    const { machine, starts } = await machineWithQemu();
    expect(await machine.powerState()).toBe('Off');
    await machine.forceOff();

    await machine.powerOn();
    expect(await machine.powerState()).toBe('On');
    await machine.powerOn();
    expect(starts).toHaveLength(1);

    await machine.forceOff();
    expect(await machine.powerState()).toBe('Off');
    // QEMU itself exits (a machine left running would hang here until the test's timeout).
    const qemuProcess = children[0];
    if (qemuProcess && qemuProcess.exitCode === null) await once(qemuProcess, 'exit');
    expect(qemuProcess?.exitCode).toBe(0);
  });

  it('boots from the override: starts with it, and on reset restarts QEMU unless it already boots that way', async () => {
    const { machine, starts } = await machineWithQemu();
    const pxeOnce: BootOverride = { target: 'Pxe', enabled: 'Once', mode: 'Legacy' };
    const hddAlways: BootOverride = { target: 'Hdd', enabled: 'Continuous', mode: 'UEFI' };
    await machine.setBootOverride(pxeOnce);
    await machine.powerOn();
    expect(starts).toEqual([pxeOnce]);

    // Started for a one-time PXE boot; a reset with no override must not PXE again.
    await machine.setBootOverride(noBootOverride);
    await machine.reset();
    expect(starts).toEqual([pxeOnce, noBootOverride]);
    await machine.reset();
    expect(starts).toHaveLength(2);

    await machine.setBootOverride(hddAlways);
    await machine.reset();
    await machine.reset();
    expect(starts).toEqual([pxeOnce, noBootOverride, hddAlways]);
    expect(await machine.powerState()).toBe('On');
    await machine.forceOff();
  });
});

describe('QmpMachine against a QEMU on its way out', () => {
  it('takes a connection dropped after the greeting as no QEMU, as when quit races a status poll', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'qmp-exiting-'));
    const qmpSocketPath = join(dir, 'qmp.sock');
    // Greets, then drops the connection when the client negotiates: what an exiting QEMU does.
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      socket.write(`${JSON.stringify({ QMP: { version: {}, capabilities: [] } })}\n`);
      socket.once('data', () => socket.destroy());
    });
    server.listen(qmpSocketPath);
    await once(server, 'listening');
    try {
      const machine = new QmpMachine({ qmpSocketPath, startQemu: async () => undefined });
      expect(await machine.powerState()).toBe('Off');
    } finally {
      for (const socket of sockets) socket.destroy();
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

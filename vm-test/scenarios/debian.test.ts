// debian@12 end to end, through the real PXE path: a VM with 1 GiB of RAM behind ipmi_sim is set
// power=on image=debian@12; its firmware PXE-boots the image's own Debian kernel and the Shoal
// busybox initramfs, which fetches root.squashfs from the appliance's image store, checks its
// sha256, mounts it read-only under an overlay on a tmpfs and switch_roots into systemd; systemd
// starts the agent as a service (its lines on the console come through the journal, tagged with
// its PID), whose hello makes the node run=ready with debian@12's digest. Timed from desired
// power=on to the hello, BIOS first, then UEFI. Under systemd the agent reports
// `systemctl is-system-running`, drains by stopping shoal-workload.target, and kexecs into the next
// image through `systemctl kexec` (debian@12 ships kexec-tools): the BIOS node goes debian@12 →
// compute@1 with no reset and no PXE, back through systemd's reboot and PXE (compute@1's busybox
// agent cannot kexec), through a kexec into a kernel that panics (an NMI) and the power-cycle
// fallback, and once more through the firmware with kexec forbidden, timed against the kexec. The same
// Debian tree, packed by umoci and skopeo as an OCI archive with its agent whited out, is imported
// through POST /images/import and boots a third VM to the import's own agent. The floor:
// the same VMs booted straight from -kernel/-initrd with the same root, timed to the agent's hello.
// The image is built once (images/os-build.test.ts says how long) and cached under ~/.cache/shoal.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CACHE_DIR, ensureImages, type BuiltImage } from '../../images/catalog.js';
import { requirements, skipUnless } from '../../test/support/environment.js';
import type { HardwareView, ImageView, ImportJobView } from '../../src/api/views.js';
import { IpmiBmc, Lab, LabAppliance, labRequirements, type NodeView, type Vm } from '../harness/index.js';

const MINUTE = 60_000;
const lab_ = labRequirements();
const tools = requirements({ commands: ['mmdebstrap', 'mksquashfs', 'ssh', 'ssh-keygen', 'curl', 'umoci', 'skopeo'] });
const skip = skipUnless('vm-test/scenarios/debian', lab_.ok ? tools : lab_);

const timings: Array<[string, number]> = [];
/** Each boot against its floor, printed after the timings. */
const ratios: string[] = [];
const ready = (image: BuiltImage) => (n: NodeView) => n.observed.run?.value === 'ready' && n.observed.image?.detail === image.manifest.digest;

describe.skipIf(skip)('debian@12 booted stateless from its squashfs, through the real PXE path', () => {
  let lab: Lab;
  let appliance: LabAppliance;
  let debian: BuiltImage;
  let compute: BuiltImage;
  /** The private key whose public half the compute profile gives the nodes it reaches. */
  let sshKey: string;

  beforeAll(async () => {
    // A cold build takes many minutes (about 300 MB of packages); a warm one seconds.
    [debian, compute] = (await ensureImages(['debian@12', 'compute@1'], DEFAULT_CACHE_DIR)) as [BuiltImage, BuiltImage];
    lab = Lab.create();
    // Under TCG on a loaded 2-core machine, a Debian boot takes minutes: the boot step gets them.
    // A kexec into compute@1 says hello within a minute or two (100 s with another group's guests
    // beside it): its deadline is shorter, so the panicking one falls back sooner.
    appliance = await LabAppliance.start(lab, { images: [debian, compute], engine: { timeouts: { 'run.boot': 20 * MINUTE, 'run.kexec': 4 * MINUTE } } });
    sshKey = join(lab.dir, 'id_ed25519');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'shoal-vm-test', '-f', sshKey]);
  }, 90 * MINUTE);

  afterAll(async () => {
    try {
      await appliance?.stop();
    } finally {
      lab?.close();
    }
    console.log(`debian timings:\n${timings.map(([step, ms]) => `  ${(ms / 1000).toFixed(1).padStart(7)} s  ${step}`).join('\n')}`);
    if (ratios.length > 0) console.log(`debian against its floor:\n${ratios.map((r) => `  ${r}`).join('\n')}`);
  });

  /** The profile under test: hostname, key, a file from a template using a label, and a static address from the reservation. */
  function computeProfile(revision: string) {
    return {
      selector: 'role=compute',
      settings: {
        hostname: '{{ name }}.lab',
        sshAuthorizedKeys: [readFileSync(`${sshKey}.pub`, 'utf8').trim()],
        files: [{ path: '/etc/shoal-test.conf', mode: '0644', content: `node={{ name }} rack={{ labels.rack }} revision=${revision}\n` }],
        network: { address: 'reservation', prefix: 24, gateway: lab.headIPv4, dns: [lab.headIPv4] },
      },
    };
  }

  /** Runs COMMAND on the node over SSH as cloud-init's default user, once sshd answers (it starts beside the agent). */
  async function ssh(vm: Vm, command: string): Promise<string> {
    const address = (await appliance.node(vm.name)).ipv4!;
    const args = ['-i', sshKey, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR', `debian@${address}`, command];
    const deadline = Date.now() + 3 * MINUTE;
    for (;;) {
      const result = await lab.run('ssh', args, 60_000);
      if (result.code === 0) return result.stdout;
      // 255 is ssh's own failure (no route yet, refused, key not installed yet); anything else is the command's.
      if (result.code !== 255 || Date.now() > deadline) throw new Error(`ssh debian@${address} ${command}: exit ${result.code}\n${result.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  /**
   * The profile's network on the boot NIC: the reservation as a static address (no DHCP lease, so no
   * `dynamic` and no lifetime), the profile's gateway as the default route, and systemd-networkd
   * running the NIC from the file cloud-init wrote (10-cloud-init-IF.network sorts before the image's
   * 80-shoal-dhcp.network, and the first file that matches a link is the one networkd uses).
   */
  async function expectStaticNetwork(vm: Vm): Promise<void> {
    const address = (await appliance.node(vm.name)).ipv4!;
    const [addrJson, route] = (await ssh(vm, 'ip -j -4 addr show scope global; ip -4 route show default')).trim().split('\n');
    type Link = { ifname: string; addr_info: Array<{ local: string; prefixlen: number; dynamic?: boolean; valid_life_time: number }> };
    const link = (JSON.parse(addrJson!) as Link[]).find((l) => l.addr_info.some((a) => a.local === address));
    expect(link, `${address} on a NIC: ${addrJson}`).toBeDefined();
    const inet = link!.addr_info.find((a) => a.local === address)!;
    expect(inet, JSON.stringify(inet)).toMatchObject({ prefixlen: 24, valid_life_time: 4294967295 });
    expect(inet.dynamic, JSON.stringify(inet)).toBeUndefined();
    expect(route).toMatch(new RegExp(`^default via ${lab.headIPv4.replaceAll('.', '\\.')} dev ${link!.ifname}\\b`));
    const networkFile = (await ssh(vm, `networkctl status --no-pager ${link!.ifname} | sed -n 's/^ *Network File: //p'`)).trim();
    expect(networkFile).toBe(`/etc/systemd/network/10-cloud-init-${link!.ifname}.network`);
  }

  /**
   * The agent's heartbeats say `systemctl is-system-running` is `running`: the boot's jobs are done
   * (multi-user.target reached) and no unit failed. (systemd prints no status for multi-user.target
   * on the console here: by then a getty has it.)
   */
  async function expectSystemRunning(vm: Vm): Promise<void> {
    await appliance.waitFor(vm.name, 'system=running (systemctl is-system-running)', (n) => n.observed.system?.value === 'running', 5 * MINUTE);
  }

  /** Enrolls VM with LABELS, runs `enrolled` (e.g. a profile that reaches it), then powers it on and waits for the hello. */
  async function bootFromOff(vm: Vm, label: string, labels: Record<string, string> = {}, enrolled: () => Promise<void> = async () => {}): Promise<string> {
    await appliance.enroll(vm, await IpmiBmc.start(lab, vm), { labels });
    await enrolled();
    const mark = vm.consoleMark();
    const started = performance.now();
    await appliance.setDesired(vm.name, { power: 'on', image: debian.ref });
    await appliance.waitFor(vm.name, `ready on ${debian.ref}`, ready(debian), 20 * MINUTE);
    const ms = Math.round(performance.now() - started);
    timings.push([`${label}: desired power=on → agent hello (run=ready with debian@12's digest)`, ms]);
    console.log(`[debian] ${label}: desired power=on → agent hello in ${(ms / 1000).toFixed(1)} s`);
    // The console lags the appliance: the agent prints its line after the hello was accepted.
    await vm.waitForConsole(/shoal-agent: hello accepted/, { since: mark, timeoutMs: 2 * MINUTE });
    return vm.consoleSince(mark);
  }

  /** The initramfs's steps, then systemd's, each once and in this order. */
  function expectInOrder(console_: string, lines: (string | RegExp)[]): void {
    let from = 0;
    for (const line of lines) {
      const rest = console_.slice(from);
      const match = typeof line === 'string' ? { index: rest.indexOf(line), length: line.length } : ((m) => ({ index: m?.index ?? -1, length: m?.[0].length ?? 0 }))(line.exec(rest));
      expect(match.index, `${String(line)} after offset ${from} of the console:\n${console_.slice(-4000)}`).toBeGreaterThanOrEqual(0);
      from += match.index + match.length;
    }
  }

  const bootLines = (vm: Vm) => [
    'shoal-init: image debian@12',
    `shoal-init: fetching root filesystem ${appliance.advertiseUrl}/boot/${vm.mac}/rootfs`,
    `shoal-init: fetched ${debian.manifest.rootfs!.size} bytes in`,
    'shoal-init: root filesystem sha256 verified',
    'shoal-init: root filesystem mounted: squashfs read-only, overlay on a tmpfs',
    'shoal-init: switching root to /newroot, running /sbin/init',
    /systemd\[1\]|Welcome to .*Debian GNU\/Linux 12/,
    /Started .*shoal-agent\.service/,
    // busybox[PID]: the journal's tag, so this is the agent systemd started, not the initramfs's.
    /busybox\[\d+\]: shoal-agent: hello accepted/,
  ];

  it('a BIOS VM with 1 GiB: PXE → Shoal initramfs → squashfs under an overlay → systemd → the agent as a service says hello', async () => {
    expect(debian.manifest.rootfs!.file).toBe('root.squashfs');
    const vm = lab.addVm({ name: 'd1', firmware: 'bios', memoryMb: 1024, maxRunMs: 30 * MINUTE });
    // The profile's file uses the rack label, so it is saved once a node it reaches has one: a
    // template is checked against every node a profile reaches, or against its selector's labels.
    const console_ = await bootFromOff(vm, 'BIOS, 1 GiB', { role: 'compute', rack: 'r7' }, () => appliance.api.request('PUT', '/profiles/compute', computeProfile('first')));
    expectInOrder(console_, bootLines(vm));
    const fetched = /shoal-init: fetched (\d+) bytes in ([\d.]+)s/.exec(console_);
    console.log(`[debian] root.squashfs: ${fetched![1]} bytes fetched by busybox wget in ${fetched![2]} s of guest time`);
    const node = await appliance.node('d1');
    expect(node.observed.image?.detail).toBe(debian.manifest.digest);
    await expectSystemRunning(vm);
    // The agent reported what QEMU made: 1 GiB less what firmware keeps, its NIC's MAC, BIOS.
    expect(node.observed.hardware, 'a hardware report').toBeDefined();
    const { hardware } = await appliance.api.request<HardwareView>('GET', '/nodes/d1/hardware');
    expect(hardware.firmware).toBe('bios');
    expect(hardware.memoryBytes / 2 ** 30).toBeGreaterThan(0.8);
    expect(hardware.nics.map((n) => n.mac)).toEqual([vm.mac]);

    // Logged in with the profile's key: cloud-init applied the hostname, the rendered file and the
    // profile's network (from network-config= on the kernel command line), and systemd says all is well.
    const [hostname, file, running, multiUser, osRelease] = (
      await ssh(vm, 'hostname; cat /etc/shoal-test.conf; systemctl is-system-running; systemctl is-active multi-user.target; . /etc/os-release; echo "$PRETTY_NAME"')
    ).trim().split('\n');
    // cloud-init 22.4 sets the short name from the profile's d1.lab (its fqdn goes to /etc/hosts only when managed).
    expect(hostname).toBe('d1');
    expect(file).toBe('node=d1 rack=r7 revision=first');
    expect(running).toBe('running');
    expect(multiUser).toBe('active');
    expect(osRelease).toMatch(/^Debian GNU\/Linux 12/);
    await expectStaticNetwork(vm);
    expect((await appliance.node('d1')).observed.config?.value).toBe('current');
  }, 30 * MINUTE);

  it('a changed profile makes d1 stale; a rollout of config=current reboots it into the new file, and its old seed is refused', async () => {
    const vm = lab.vms.find((v) => v.name === 'd1')!;
    const cmdline = await ssh(vm, 'cat /proc/cmdline');
    const seed = /\bs=(http:\/\/\S+)/.exec(cmdline)?.[1];
    expect(seed, 'a NoCloud seed URL on the kernel command line').toBeDefined();
    expect(cmdline, 'the profile\'s network-config on the kernel command line').toMatch(/ network-config=[A-Za-z0-9+/]+=*(?:\s|$)/);
    const rev = (await appliance.api.request<{ events: Array<{ rev: number }> }>('GET', '/events?node=d1&limit=10000')).events.at(-1)!.rev;
    await appliance.api.request('PUT', '/profiles/compute', computeProfile('second'));
    await appliance.waitFor('d1', 'config=stale', (n) => n.observed.config?.value === 'stale', MINUTE);
    const started = performance.now();
    await appliance.api.request('POST', '/rollouts', { selector: 'role=compute', maxUnavailable: 1, desired: { config: 'current' } });
    await appliance.waitFor('d1', 'config=current and ready again', (n) => n.observed.config?.value === 'current' && n.observed.run?.value === 'ready' && n.phase === 'converged', 10 * MINUTE);
    timings.push(['config rollout on d1: profile changed → rebooted with it, ready', Math.round(performance.now() - started)]);
    expect((await ssh(vm, 'cat /etc/shoal-test.conf')).trim()).toBe('node=d1 rack=r7 revision=second');
    // The boot the rollout made applied the network again, and the agent came back over it.
    await expectStaticNetwork(vm);
    const configs = (await appliance.api.request<{ events: Array<{ kind: string; facet: string; new: string | null }> }>('GET', `/events?node=d1&after=${rev}&limit=10000`)).events
      .filter((e) => e.kind === 'observed' && e.facet === 'config')
      .map((e) => e.new);
    expect(configs.join(' → ')).toMatch(/^stale → .*current$/);
    // The seed of the boot before is retired: whoever kept it reads nothing.
    const old = await lab.run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `${seed}meta-data`]);
    expect(old.stdout).toBe('404');
  }, 30 * MINUTE);

  /** The node's events after revision `rev`: the observed values of `facet`, in order. */
  async function observedSince(name: string, rev: number, facet: string): Promise<Array<string | null>> {
    const { events } = await appliance.api.request<{ events: Array<{ kind: string; facet: string; new: string | null }> }>('GET', `/events?node=${name}&after=${rev}&limit=10000`);
    return events.filter((e) => e.kind === 'observed' && e.facet === facet).map((e) => e.new);
  }
  const lastRev = async (name: string) => (await appliance.api.request<{ events: Array<{ rev: number }> }>('GET', `/events?node=${name}&limit=10000`)).events.at(-1)!.rev;
  /** Network boot files the pxe module served (loaders over TFTP, iPXE scripts): what a firmware boot fetches and a kexec does not. */
  async function bootFilesServed(): Promise<number> {
    const res = await lab.run('curl', ['-sf', '--unix-socket', appliance.socketPath, '-H', `authorization: Bearer ${appliance.token}`, 'http://appliance/metrics']);
    expect(res.code, res.stderr).toBe(0);
    const text = res.stdout;
    return [...text.matchAll(/^shoal_(?:pxe_boot_files|tftp_transfers)_total\{[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
  }

  it('reprovisions the BIOS node debian@12 → compute@1 through kexec (no reset, no PXE), back through systemd\'s reboot and PXE, and once more through the firmware with kexec forbidden', async () => {
    const vm = lab.vms.find((v) => v.name === 'd1')!;
    // The config rollout before left d1 desiring config=current: profile changes here must not reboot it on their own.
    await appliance.setDesired('d1', { config: null });
    await appliance.waitFor('d1', 'kexec available (debian@12 ships kexec-tools)', (n) => n.observed.kexec?.value === 'available', MINUTE);
    const qmp = await vm.qmp();
    const resets: string[] = [];
    const stopWatching = qmp.onEvent((event) => event.event === 'RESET' && resets.push(JSON.stringify(event.data ?? {})));
    try {
      // debian@12 → compute@1 through kexec.
      let rev = await lastRev('d1');
      let files = await bootFilesServed();
      let mark = vm.consoleMark();
      let started = performance.now();
      await appliance.setDesired('d1', { image: compute.ref });
      await appliance.waitFor('d1', `ready on ${compute.ref}`, ready(compute), 10 * MINUTE);
      const kexecMs = Math.round(performance.now() - started);
      timings.push(['reprovision d1 debian@12 → compute@1 through kexec (drain, fetch, load, kexec, hello)', kexecMs]);
      expect(resets, 'QEMU reset the VM during a kexec').toEqual([]);
      expect(await bootFilesServed(), 'a loader or iPXE script was fetched during a kexec').toBe(files);
      // The boot facet saw the armed boot started by the OS, with no firmware stage; power never moved.
      expect(await observedSince('d1', rev, 'boot')).toEqual(['armed', 'kexec']);
      expect(await observedSince('d1', rev, 'power')).toEqual([]);
      expectInOrder(vm.consoleSince(mark), [
        'shoal-agent: draining: stopping the workload (shoal-workload.target)',
        'shoal-agent: drained',
        /shoal-agent: kexec kexec-[a-z0-9-]+: fetching \/images\/compute\/1\/vmlinuz/,
        'shoal-agent: loaded compute@1 for kexec',
        'shoal-agent: kexec into compute@1',
        'shoal-agent: systemd is taking the node into the new kernel',
        'shoal-init: image compute@1',
      ]);

      // compute@1 → debian@12: its busybox agent has no kexec, so systemd's reboot, the firmware and PXE.
      expect((await appliance.node('d1')).observed.kexec).toMatchObject({ value: 'unavailable', detail: 'the running OS has no kexec command (kexec-tools)' });
      mark = vm.consoleMark();
      started = performance.now();
      await appliance.setDesired('d1', { image: debian.ref });
      await appliance.waitFor('d1', `ready on ${debian.ref}`, ready(debian), 10 * MINUTE);
      timings.push(['reprovision d1 compute@1 → debian@12 (drain, reboot, PXE, squashfs, systemd, hello)', Math.round(performance.now() - started)]);
      expect(resets.length, 'the reboot reset the VM').toBeGreaterThanOrEqual(1);
      await vm.waitForConsole(/busybox\[\d+\]: shoal-agent: hello accepted/, { since: mark, timeoutMs: 2 * MINUTE });
      expectInOrder(vm.consoleSince(mark), ['shoal-init: image debian@12', /busybox\[\d+\]: shoal-agent: hello accepted/]);

      // A kexec into a kernel that panics: the NMI QEMU injects once the new kernel's init runs
      // (unknown_nmi_panic=1 from a profile) stops it dead; run.kexec fails at its deadline and the
      // engine power-cycles d1 through its BMC into a network boot of the same image.
      await appliance.api.request('PUT', '/profiles/nmi-panics', { nodes: ['d1'], settings: { kernelArgs: ['unknown_nmi_panic=1'] } });
      await appliance.waitFor('d1', 'kexec available again', (n) => n.observed.kexec?.value === 'available', MINUTE);
      rev = await lastRev('d1');
      mark = vm.consoleMark();
      started = performance.now();
      await appliance.setDesired('d1', { image: compute.ref });
      await vm.waitForConsole(/shoal-init: image compute@1/, { since: mark, timeoutMs: 5 * MINUTE });
      await qmp.execute('inject-nmi');
      await vm.waitForConsole(/Kernel panic - not syncing: NMI/, { since: mark, timeoutMs: MINUTE });
      await appliance.waitFor('d1', `ready on ${compute.ref} after the fallback`, ready(compute), 15 * MINUTE);
      timings.push(['d1 debian@12 → compute@1: kexec into a kernel that panics, run.kexec deadline, power cycle, PXE, hello', Math.round(performance.now() - started)]);
      const boots = await observedSince('d1', rev, 'boot');
      expect(boots.slice(0, 2)).toEqual(['armed', 'kexec']);
      expect(boots).toContain('dhcp');
      expect(await observedSince('d1', rev, 'run')).toContain('hung');
      expect(await observedSince('d1', rev, 'power')).toEqual(['off', 'on']);
      expect((await appliance.node('d1')).observed.kexec?.value).toBe('unavailable'); // compute@1 cannot kexec
      await appliance.api.request('DELETE', '/profiles/nmi-panics');

      // The same change through the firmware, kexec forbidden, to time it against the kexec.
      await appliance.setDesired('d1', { image: debian.ref });
      await appliance.waitFor('d1', `ready on ${debian.ref}`, ready(debian), 10 * MINUTE);
      await appliance.api.request('PUT', '/profiles/no-kexec', { nodes: ['d1'], settings: { kexec: false } });
      await appliance.waitFor('d1', 'kexec forbidden', (n) => n.observed.kexec?.value === 'unavailable' && n.phase === 'converged', MINUTE);
      mark = vm.consoleMark();
      started = performance.now();
      await appliance.setDesired('d1', { image: compute.ref });
      await appliance.waitFor('d1', `ready on ${compute.ref}`, ready(compute), 10 * MINUTE);
      const fullMs = Math.round(performance.now() - started);
      timings.push(['reprovision d1 debian@12 → compute@1 through the firmware, kexec forbidden (drain, reboot, PXE, hello)', fullMs]);
      expectInOrder(vm.consoleSince(mark), ['shoal-agent: systemd is taking the node down (reboot)', 'shoal-init: image compute@1']);
      await appliance.api.request('DELETE', '/profiles/no-kexec');
      ratios.push(`debian@12 → compute@1 on d1: kexec ${(kexecMs / 1000).toFixed(1)} s / through the firmware ${(fullMs / 1000).toFixed(1)} s = ${(kexecMs / fullMs).toFixed(2)}× (goal ≤ 0.5× under TCG, where SeaBIOS's POST is short)`);
    } finally {
      stopWatching();
      qmp.close();
    }
    // Power it off before the next VM: two TCG guests at once would only slow each other down.
    await appliance.setDesired('d1', { power: 'off' });
    await appliance.waitFor('d1', 'off', (n) => n.observed.power?.value === 'off' && n.phase === 'converged', 6 * MINUTE);
  }, 60 * MINUTE);

  it('a UEFI VM with 1 GiB boots it the same way', async () => {
    const vm = lab.addVm({ name: 'd2', firmware: 'uefi', memoryMb: 1024, maxRunMs: 30 * MINUTE });
    const console_ = await bootFromOff(vm, 'UEFI, 1 GiB');
    expectInOrder(console_, bootLines(vm));
    await expectSystemRunning(vm);
    expect((await appliance.api.request<HardwareView>('GET', '/nodes/d2/hardware')).hardware.firmware).toBe('uefi');
    await appliance.setDesired('d2', { power: 'off' });
    await appliance.waitFor('d2', 'off', (n) => n.observed.power?.value === 'off' && n.phase === 'converged', 6 * MINUTE);
  }, 30 * MINUTE);

  it('an image imported from an OCI archive (umoci and skopeo packing the same Debian tree, its agent whited out) boots the same way', async () => {
    // The tree debian@12 was built from, as an operator's container image: one layer of it, then a
    // layer of whiteouts removing the agent, so the import's own agent is what says hello.
    const tree = join(DEFAULT_CACHE_DIR, 'debian', 'trees', (debian.manifest.builtFrom.recipe as { treeKey: string }).treeKey);
    const layout = join(lab.dir, 'oci-layout');
    const archive = join(lab.dir, 'site-debian.tar');
    const tool = async (command: string, args: string[]) => {
      const result = await lab.run(command, args, 10 * MINUTE);
      if (result.code !== 0) throw new Error(`${command} ${args.join(' ')}: exit ${result.code}\n${result.stderr}`);
    };
    let started = performance.now();
    await tool('umoci', ['init', '--layout', layout]);
    await tool('umoci', ['new', '--image', `${layout}:site`]);
    await tool('umoci', ['insert', '--image', `${layout}:site`, tree, '/']);
    for (const path of ['/usr/bin/shoal-agent', '/etc/systemd/system/shoal-agent.service', '/etc/systemd/system/multi-user.target.wants/shoal-agent.service']) {
      await tool('umoci', ['insert', '--image', `${layout}:site`, '--whiteout', path]);
    }
    await tool('skopeo', ['copy', '--quiet', `oci:${layout}:site`, `oci-archive:${archive}`]);
    timings.push(['OCI archive of the debian@12 tree made (umoci insert, skopeo copy)', Math.round(performance.now() - started)]);

    started = performance.now();
    const queued = await appliance.api.request<ImportJobView>('POST', '/images/import', { source: archive, name: 'site-debian@1' });
    let job = queued;
    const deadline = Date.now() + 20 * MINUTE;
    while (job.state === 'queued' || job.state === 'running') {
      if (Date.now() > deadline) throw new Error(`import ${job.id} still ${job.state} after 20 minutes:\n${job.progress.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      job = await appliance.api.request<ImportJobView>('GET', `/images/imports/${job.id}`);
    }
    expect(job.error, job.progress.join('\n')).toBeUndefined();
    expect(job.state).toBe('succeeded');
    timings.push(['import of the OCI archive (skopeo, layer checks, umoci unpack, agent, mksquashfs, store)', Math.round(performance.now() - started)]);
    expect(job.progress.join('\n')).toMatch(/checking layer 4\/4/);
    expect(job.progress.join('\n')).toContain('agent installed (shoal-agent.service); every wired NIC takes a DHCP lease through systemd-networkd');
    const imported = await appliance.api.request<ImageView>('GET', '/images/site-debian@1');
    expect(imported.builtFrom?.['oci']).toMatchObject({ source: archive });

    const vm = lab.addVm({ name: 'd3', firmware: 'bios', memoryMb: 1024, maxRunMs: 30 * MINUTE });
    await appliance.enroll(vm, await IpmiBmc.start(lab, vm));
    const mark = vm.consoleMark();
    started = performance.now();
    await appliance.setDesired('d3', { power: 'on', image: 'site-debian@1' });
    await appliance.waitFor('d3', 'ready on site-debian@1', (n) => n.observed.run?.value === 'ready' && n.observed.image?.detail === imported.digest, 20 * MINUTE);
    const ms = Math.round(performance.now() - started);
    timings.push(['OCI import, BIOS, 1 GiB: desired power=on → agent hello (run=ready with its digest)', ms]);
    await vm.waitForConsole(/busybox\[\d+\]: shoal-agent: hello accepted/, { since: mark, timeoutMs: 2 * MINUTE });
    expectInOrder(vm.consoleSince(mark), [
      'shoal-init: image site-debian@1',
      'shoal-init: root filesystem sha256 verified',
      'shoal-init: switching root to /newroot, running /sbin/init',
      /Started .*shoal-agent\.service/,
      /busybox\[\d+\]: shoal-agent: hello accepted/,
    ]);
    await expectSystemRunning(vm);
    await appliance.setDesired('d3', { power: 'off' });
    await appliance.waitFor('d3', 'off', (n) => n.observed.power?.value === 'off' && n.phase === 'converged', 6 * MINUTE);
  }, 50 * MINUTE);

  it('the floor: the same VMs booted straight from -kernel/-initrd with the same root, timed to the agent\'s hello', async () => {
    const rootfs = debian.manifest.rootfs!;
    for (const firmware of ['bios', 'uefi'] as const) {
      const vm = lab.addVm({ name: `floor-${firmware}`, firmware, memoryMb: 1024, noReboot: true, maxRunMs: 20 * MINUTE });
      const started = performance.now();
      await vm.start({
        kernel: debian.kernelPath,
        initrd: debian.initrdPath,
        // The token is no real one: the floor ends where the agent sends its hello, not at its acceptance.
        append: `${debian.manifest.cmdline} shoal.url=${appliance.advertiseUrl} shoal.node=floor-${firmware} shoal.token=floor shoal.image=${debian.ref} shoal.rootfs=${appliance.advertiseUrl}/images/debian/12/${rootfs.file} shoal.rootfs_sha256=${rootfs.sha256}`,
      });
      await vm.waitForConsole(/busybox\[\d+\]: shoal-agent[^\n]*appliance http/, { timeoutMs: 15 * MINUTE });
      timings.push([`floor: ${firmware.toUpperCase()}, 1 GiB, QEMU start → agent sends hello (direct kernel boot, same root)`, Math.round(performance.now() - started)]);
      vm.kill();
    }
    const ratio = (label: string, floor: string) => {
      const full = timings.find(([step]) => step.startsWith(label))?.[1];
      const base = timings.find(([step]) => step.startsWith(floor))?.[1];
      if (full !== undefined && base !== undefined) ratios.push(`${label}: PXE path ${(full / 1000).toFixed(1)} s / floor ${(base / 1000).toFixed(1)} s = ${(full / base).toFixed(2)}×`);
    };
    ratio('BIOS, 1 GiB', 'floor: BIOS');
    ratio('UEFI, 1 GiB', 'floor: UEFI');
    ratio('OCI import, BIOS, 1 GiB', 'floor: BIOS');
  }, 40 * MINUTE);
});

// The ansible role for real: Debian's ansible-playbook runs site.yml against a Debian 12 root built
// here with debootstrap (cached), reached through ansible's chroot connection (community.general,
// Debian's `ansible` package), exactly as it would run against a head node. Then the installed
// appliance is started inside the root, from the installed unit's command line, user and
// capabilities, in a network namespace of its own (loopback only), and asked questions with the
// fetched token. A second run must change nothing; a third, with a new bundle, must upgrade the
// release and keep the data. Plus ansible-playbook --syntax-check and ansible-lint.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync, cpSync, readdirSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { requirements, skipUnless, type Requirement } from '../test/support/environment.js';
import { writeFakeImage } from '../test/support/fake-image.js';
import { loadConfig, type ShoalConfig } from '../src/config.js';

const run = promisify(execFile);
const ansibleDir = dirname(fileURLToPath(import.meta.url));
const repoDir = dirname(ansibleDir);
const testScripts = join(ansibleDir, 'test');
const MINUTE = 60_000;
/** High and unused: the API of the appliance started in the test (in its own network namespace anyway). */
const API_PORT = 18_467;
/** The plain-HTTP port of the node routes. */
const BOOT_PORT = 18_468;
const TFTP_PORT = 18_469;
const CHROOT_PLUGIN = '/usr/lib/python3/dist-packages/ansible_collections/community/general/plugins/connection/chroot.py';
/** Where the test's own scripts go inside the root; not part of what the role installs. */
const PROBE_DIR = '/root/shoal-probe';

async function sh(file: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  try {
    const { stdout } = await run(file, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, cwd: repoDir, env, killSignal: 'SIGKILL' });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${basename(file)} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

/** PLAY RECAP counters of the one host, e.g. { ok: 20, changed: 0, failed: 0, … }. */
function recap(output: string): Record<string, number> {
  const line = output.split('\n').find((l) => /^head-test\s+:/.test(l));
  if (!line) throw new Error(`no PLAY RECAP line for head-test in:\n${output}`);
  return Object.fromEntries([...line.matchAll(/(\w+)=(\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
}

/** The tasks a run reported as changed, for a readable failure. */
function changedTasks(output: string): string[] {
  const tasks: string[] = [];
  let task = '';
  for (const line of output.split('\n')) {
    const header = /^(?:TASK|RUNNING HANDLER) \[(.*)\]/.exec(line);
    if (header) task = header[1]!;
    else if (/^changed:/.test(line)) tasks.push(`${task}: ${line}`);
  }
  return tasks;
}

const ansibleEnv = {
  ...process.env,
  ANSIBLE_NOCOLOR: '1',
  NO_COLOR: '1',
  ANSIBLE_FORCE_COLOR: '0',
  ANSIBLE_RETRY_FILES_ENABLED: '0',
  ANSIBLE_PIPELINING: '1',
  ANSIBLE_STDOUT_CALLBACK: 'default',
  ANSIBLE_HOST_KEY_CHECKING: '0',
};

describe.skipIf(skipUnless('ansible playbook syntax', requirements({ commands: ['ansible-playbook'] })))('ansible playbook syntax', () => {
  it('passes ansible-playbook --syntax-check', async () => {
    const out = await sh('ansible-playbook', ['-i', join(ansibleDir, 'inventory.example.yml'), '--syntax-check', join(ansibleDir, 'site.yml')], MINUTE, ansibleEnv);
    expect(out).toContain('playbook: ');
  }, MINUTE);
});

describe.skipIf(skipUnless('the role\'s config template', requirements({ commands: ['ansible-playbook'] })))('the role\'s config template', () => {
  const render = async (vars: Record<string, unknown>): Promise<ShoalConfig> => {
    const out = join(mkdtempSync(join(tmpdir(), 'shoal-role-config-')), 'config.yaml');
    try {
      await sh('ansible-playbook', ['-i', 'localhost,', join(testScripts, 'render-config.yml'), '-e', JSON.stringify({ out, ...vars })], MINUTE, ansibleEnv);
      return loadConfig(out);
    } finally {
      rmSync(dirname(out), { recursive: true, force: true });
    }
  };

  it('keeps the embedded SQLite store by default, the host named as its appliance', async () => {
    const config = await render({});
    expect(config.state).toEqual({ backend: 'sqlite' });
    expect(config.appliance).toMatchObject({ name: 'localhost', networks: ['10.0.0.0/24'], leaseTtlMs: 15_000 });
    expect(config.appliance.standbyFor).toBeUndefined();
  }, MINUTE);

  it('renders a standby on PostgreSQL: the store URL, its name, its networks and whom it stands by for', async () => {
    const config = await render({
      shoal_state_backend: 'postgres',
      shoal_state_url: 'postgresql://shoal@db.example/shoal',
      shoal_appliance_name: 'head-b',
      shoal_appliance_standby_for: 'head-a',
      shoal_provisioning_subnet: '10.1.0.0/16',
      shoal_appliance_lease_ttl_ms: 9000,
    });
    expect(config.state).toEqual({ backend: 'postgres', url: 'postgresql://shoal@db.example/shoal' });
    expect(config.appliance).toEqual({ name: 'head-b', networks: ['10.1.0.0/16'], standbyFor: 'head-a', leaseTtlMs: 9000 });
  }, MINUTE);
});

describe.skipIf(skipUnless('ansible-lint', requirements({ commands: ['ansible-lint'] })))('ansible-lint', () => {
  it('passes with the production profile', async () => {
    // ansible-lint finds roles/ and its configuration relative to the working directory.
    const { stdout, stderr } = await run('ansible-lint', ['--profile', 'production', '--offline', 'site.yml'], { cwd: ansibleDir, timeout: 3 * MINUTE, env: ansibleEnv }).catch(
      (err: { stdout: string; stderr: string; message: string }) => {
        throw new Error(`ansible-lint failed: ${err.message}\n${err.stdout}\n${err.stderr}`);
      },
    );
    expect(`${stdout}${stderr}`).toMatch(/Passed with production profile: 0 failure\(s\), 0 warning\(s\)/);
  }, 3 * MINUTE);
});

function headNodeRequirement(): Requirement {
  const base = requirements({ root: true, commands: ['ansible-playbook', 'debootstrap', 'unshare', 'chroot', 'ip', 'flock'] });
  if (existsSync(CHROOT_PLUGIN)) return base;
  const missing = "ansible's chroot connection (community.general, Debian package ansible)";
  return { ok: false, reason: base.ok ? `missing ${missing}; run scripts/install-deps.sh as root` : base.reason.replace(/^missing /, `missing ${missing}, `) };
}

interface Probe {
  base: string;
  bootBase: string;
  fingerprint: string;
  apiOnBootPortStatus: number;
  enrolled?: { status: number };
  nodes: { status: number; names: string[] };
  withoutTokenStatus: number;
  images: { status: number; refs: string[] };
  bootScript: { status: number; firstLine: string };
  tftp?: { opcode: number; block: number; bytes: number };
  udpPorts: string[];
  process: { uids: string; capEff: string; capAmb: string; noNewPrivs: string };
}

describe.skipIf(skipUnless('ansible role on a Debian 12 root', headNodeRequirement()))('ansible role on a Debian 12 root', () => {
  let work: string;
  let root: string;
  let bundle: string;
  let inventory: string;
  let firstRun: string;
  let firstProbe: Probe;
  /** The operator's API certificate the role installs, as its SHA-256 fingerprint. */
  let givenFingerprint: string;
  const tokenDest = () => join(work, 'credentials', 'api-token');
  const inside = (path: string) => join(root, path);
  const playbook = (extra: string[] = []) =>
    sh(join(testScripts, 'in-root.sh'), ['--outside', root, 'ansible-playbook', '-i', inventory, join(ansibleDir, 'site.yml'), ...extra], 8 * MINUTE, ansibleEnv);
  const probe = async (args: string[] = []): Promise<Probe> => {
    const out = await sh(join(testScripts, 'in-root.sh'), ['--isolated-net', root, 'bash', `${PROBE_DIR}/start-appliance.sh`, ...args], 2 * MINUTE);
    return JSON.parse(out.trim().split('\n').at(-1)!) as Probe;
  };
  const releases = () => readdirSync(inside('/opt/shoal/releases')).sort();
  const current = () => basename(readlinkSync(inside('/opt/shoal/current')));
  /** The current release's manifest, read through the root (the link is absolute inside the root). */
  const currentManifest = () => JSON.parse(readFileSync(inside(`/opt/shoal/releases/${current()}/manifest.json`), 'utf8')) as Record<string, unknown>;

  beforeAll(async () => {
    // Under /var/tmp rather than /tmp: the root is a few hundred MB and /tmp may be a small tmpfs.
    work = mkdtempSync('/var/tmp/shoal-ansible-test.');
    root = join(work, 'root');
    const started = Date.now();
    const lap = (what: string) => console.log(`[ansible test] ${what} after ${((Date.now() - started) / 1000).toFixed(0)} s`);
    // The bundle (compile, dashboard, production dependencies) and the root (debootstrap, or its
    // cached tarball) are independent: made side by side.
    const [bundleOut] = await Promise.all([
      sh('bash', [join(repoDir, 'scripts/bundle.sh'), join(work, 'dist')], 8 * MINUTE).then((out) => (lap('bundle built'), out)),
      sh(join(testScripts, 'debian-root.sh'), [root], 12 * MINUTE).then(() => lap('Debian root ready')),
    ]);
    bundle = bundleOut.trim().split('\n').at(-1)!;
    expect(bundle).toMatch(/\/shoal-\d+\.\d+\.\d+.*\.tar\.gz$/);

    mkdirSync(inside(PROBE_DIR), { recursive: true });
    for (const file of ['start-appliance.sh', 'probe-api.mjs']) cpSync(join(testScripts, file), inside(`${PROBE_DIR}/${file}`));
    // An image on the controller for the role to copy over and the appliance to import at start.
    writeFakeImage(join(work, 'images', 'probe@1'), { name: 'probe', version: '1', kernel: Buffer.from('kernel bytes'), initrd: Buffer.from('initrd bytes') });

    // An operator's certificate for the API (self-signed: the probe trusts it as its own CA).
    const tlsDir = join(work, 'tls');
    mkdirSync(tlsDir);
    await sh('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=head-test', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '2', '-keyout', join(tlsDir, 'api.key'), '-out', join(tlsDir, 'api.crt')], MINUTE);
    givenFingerprint = new X509Certificate(readFileSync(join(tlsDir, 'api.crt'))).fingerprint256;

    inventory = join(work, 'inventory.yml');
    const vars = {
      shoal_bundle: bundle,
      // Everything the appliance binds stays on loopback (and the test starts it in a network
      // namespace of its own): DHCP and TFTP answer on lo only, the API (HTTPS, with the operator's
      // certificate) and the node routes (plain HTTP) on high ports.
      shoal_api_listen: '127.0.0.1',
      shoal_api_port: API_PORT,
      shoal_boot_port: BOOT_PORT,
      shoal_tls_cert: join(tlsDir, 'api.crt'),
      shoal_tls_key: join(tlsDir, 'api.key'),
      shoal_provisioning_interface: 'lo',
      shoal_provisioning_address: '127.0.0.1',
      shoal_provisioning_subnet: '127.0.0.0/24',
      shoal_dhcp_mode: 'full',
      shoal_dhcp_pool: { start: '127.0.0.100', end: '127.0.0.200' },
      shoal_dhcp_dns_servers: ['127.0.0.1'],
      shoal_dhcp_domain_name: 'test.invalid',
      shoal_tftp_port: TFTP_PORT,
      shoal_bmc_username: 'ADMIN',
      shoal_bmc_password: 'not a real secret',
      shoal_extra_modules: [{ name: 'sim', options: { initialPower: 'off' } }],
      shoal_module_options: { ipmi: { bindAddress: '127.0.0.1', timeoutMs: 1500 } },
      shoal_images: [{ src: join(work, 'images', 'probe@1') }],
      shoal_token_fetch_dest: tokenDest(),
    };
    writeFileSync(
      inventory,
      JSON.stringify({
        shoal_head_nodes: {
          hosts: {
            'head-test': {
              ansible_connection: 'community.general.chroot',
              ansible_host: root,
              ansible_python_interpreter: '/usr/bin/python3',
              // Already root on the controller, and a fresh root has no sudo.
              ansible_become: false,
            },
          },
          vars,
        },
      }),
    );
    firstRun = await playbook();
    lap('first playbook run done');
  }, 25 * MINUTE);

  afterAll(() => {
    // in-root.sh keeps its mounts in a private namespace, so nothing of the host is under the root.
    if (work && !process.env.SHOAL_KEEP_ANSIBLE_ROOT) rmSync(work, { recursive: true, force: true });
  });

  it('runs the playbook without failures', () => {
    expect(recap(firstRun)).toMatchObject({ failed: 0, unreachable: 0 });
    expect(recap(firstRun).changed).toBeGreaterThan(0);
  });

  it('installs the release under a current link, with its own Node runtime and no dev dependencies', () => {
    expect(releases()).toHaveLength(1);
    const release = `/opt/shoal/releases/${releases()[0]}`;
    expect(current()).toBe(releases()[0]);
    for (const file of ['runtime/node', 'bin/shoal.js', 'dist/src/cli/main.js', 'dist/modules/pxe/index.js', 'web/dist/index.html', 'node_modules/better-sqlite3/build/Release/better_sqlite3.node']) {
      expect(existsSync(inside(`${release}/${file}`)), file).toBe(true);
    }
    expect(existsSync(inside(`${release}/node_modules/vitest`)), 'no dev dependencies in the bundle').toBe(false);
    expect(readlinkSync(inside('/opt/shoal/current'))).toBe(release);
    const manifest = currentManifest() as { version: string; node: { version: string } };
    expect(manifest.version).toBe((JSON.parse(readFileSync(join(repoDir, 'package.json'), 'utf8')) as { version: string }).version);
    expect(Number(/^v(\d+)/.exec(manifest.node.version)![1])).toBeGreaterThanOrEqual(20);
    expect(statSync(inside(`${release}/runtime/node`)).uid, 'release files belong to root').toBe(0);
  });

  it('creates the system user, the data directory, the configuration and iPXE', () => {
    const passwd = readFileSync(inside('/etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('shoal:'))!;
    expect(passwd, 'a shoal user').toBeDefined();
    const [, , uid, , , home, shell] = passwd.split(':');
    expect(Number(uid)).toBeLessThan(1000);
    expect([home, shell]).toEqual(['/var/lib/shoal', '/usr/sbin/nologin']);
    const data = statSync(inside('/var/lib/shoal'));
    expect([data.uid, data.mode & 0o777]).toEqual([Number(uid), 0o750]);

    const config = readFileSync(inside('/etc/shoal/config.yaml'), 'utf8');
    expect(statSync(inside('/etc/shoal/config.yaml')).mode & 0o777).toBe(0o640);
    expect(config).toContain('dataDir: /var/lib/shoal');
    expect(config).toContain(`port: ${API_PORT}`);
    expect(config).toMatch(/tls:\n\s+cert: \/etc\/shoal\/tls\/api\.crt\n\s+key: \/etc\/shoal\/tls\/api\.key/);
    expect(config).toMatch(new RegExp(`boot:\\n\\s+listen: 127\\.0\\.0\\.1\\n\\s+port: ${BOOT_PORT}`));
    expect(config).toContain(`advertiseUrl: http://127.0.0.1:${BOOT_PORT}`);
    // The operator's key is the appliance user's alone.
    const key = statSync(inside('/etc/shoal/tls/api.key'));
    expect([key.uid, key.mode & 0o777]).toEqual([Number(uid), 0o600]);
    expect(statSync(inside('/etc/shoal/tls/api.crt')).mode & 0o777).toBe(0o644);
    expect(config).toMatch(/name: lo\n\s+address: 127\.0\.0\.1/);
    expect(config).toContain('defaultUsername: ADMIN');
    expect(config).toContain('- /var/lib/shoal/seed/probe@1');
    expect(existsSync(inside('/var/lib/shoal/seed/probe@1/image.json'))).toBe(true);

    expect(existsSync(inside('/usr/lib/ipxe/undionly.kpxe'))).toBe(true);
    expect(existsSync(inside('/usr/lib/ipxe/snponly.efi'))).toBe(true);
  });

  it('installs a hardened unit, enabled at boot, that systemd-analyze verify accepts', async () => {
    const unit = readFileSync(inside('/etc/systemd/system/shoal.service'), 'utf8').split('\n');
    for (const line of [
      'User=shoal',
      'ExecStart=/opt/shoal/current/runtime/node /opt/shoal/current/bin/shoal.js serve --config /etc/shoal/config.yaml',
      'AmbientCapabilities=CAP_NET_BIND_SERVICE',
      'CapabilityBoundingSet=CAP_NET_BIND_SERVICE',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ReadWritePaths=/var/lib/shoal',
      'Restart=on-failure',
    ]) {
      expect(unit, line).toContain(line);
    }
    expect(lstatSync(inside('/etc/systemd/system/multi-user.target.wants/shoal.service')).isSymbolicLink()).toBe(true);
    // Inside the root, so the unit's paths and user are the root's. verify exits non-zero on errors.
    await sh(join(testScripts, 'in-root.sh'), [root, 'systemd-analyze', 'verify', '/etc/systemd/system/shoal.service'], MINUTE);
    // systemd's own rating of the sandboxing: 0 (locked down) to 10 (exposed); under 2 is "OK".
    const security = await sh(join(testScripts, 'in-root.sh'), [root, 'systemd-analyze', 'security', '--offline=true', '--no-pager', '/etc/systemd/system/shoal.service'], MINUTE);
    const exposure = /Overall exposure level for shoal\.service: ([\d.]+) (\S+)/.exec(security);
    expect(exposure, security).not.toBeNull();
    expect(Number(exposure![1])).toBeLessThan(2);
  }, MINUTE);

  it('opens DHCP, TFTP and HTTP in nftables on the provisioning interface only', () => {
    const rules = readFileSync(inside('/etc/nftables.d/shoal.nft'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('insert rule'));
    expect(rules).toHaveLength(5);
    for (const rule of rules) expect(rule).toMatch(/^insert rule inet filter input iifname "lo" /);
    expect(rules.join('\n')).toContain('udp dport 67 accept');
    expect(rules.join('\n')).toContain(`udp dport ${TFTP_PORT} accept`);
    expect(rules.join('\n')).toContain(`ip saddr 127.0.0.0/24 tcp dport ${BOOT_PORT} accept`);
    expect(rules.join('\n')).toContain(`ip saddr 127.0.0.0/24 tcp dport ${API_PORT} accept`);
    expect(readFileSync(inside('/etc/nftables.conf'), 'utf8')).toContain('include "/etc/nftables.d/*.nft"');
    expect(lstatSync(inside('/etc/systemd/system/sysinit.target.wants/nftables.service')).isSymbolicLink()).toBe(true);
  });

  it('hands the API token back to the controller', () => {
    const token = readFileSync(inside('/var/lib/shoal/api-token'), 'utf8');
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
    expect(statSync(inside('/var/lib/shoal/api-token')).mode & 0o777).toBe(0o600);
    expect(readFileSync(tokenDest(), 'utf8')).toBe(token);
    expect(statSync(tokenDest()).mode & 0o777).toBe(0o600);
  });

  it('makes the key that seals BMC passwords, apart from the data directory, for the appliance user only', () => {
    const key = statSync(inside('/etc/shoal/secret.key'));
    expect({ size: key.size, mode: key.mode & 0o777 }).toEqual({ size: 32, mode: 0o600 });
    const uid = readFileSync(inside('/etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('shoal:'))!.split(':')[2];
    expect(key.uid).toBe(Number(uid));
  });

  it('starts from the installed unit and config, as the shoal user, and answers its API with the token', async () => {
    firstProbe = await probe(['--enroll', 'upgrade-witness']);
    // The API over HTTPS with the operator's certificate; the node routes on plain HTTP, which has no API.
    expect(firstProbe.base).toBe(`https://127.0.0.1:${API_PORT}`);
    expect(firstProbe.fingerprint).toBe(givenFingerprint);
    expect(firstProbe.bootBase).toBe(`http://127.0.0.1:${BOOT_PORT}`);
    expect(firstProbe.apiOnBootPortStatus).toBe(404);
    expect(firstProbe.enrolled?.status).toBe(201);
    expect(firstProbe.nodes).toEqual({ status: 200, names: ['upgrade-witness'] });
    expect(firstProbe.withoutTokenStatus).toBe(401);
    // The image the role copied from the controller was imported at start.
    expect(firstProbe.images).toEqual({ status: 200, refs: ['probe@1'] });
    // The pxe module serves iPXE scripts, and Debian's iPXE binaries over TFTP.
    expect(firstProbe.bootScript).toEqual({ status: 200, firstLine: '#!ipxe' });
    expect(firstProbe.tftp).toMatchObject({ opcode: 3, block: 1 });
    // DHCP (67, both sockets) and TFTP bound with the unit's one capability, by the shoal user.
    expect(firstProbe.udpPorts).toEqual(expect.arrayContaining(['127.0.0.1:67', '255.255.255.255:67', `127.0.0.1:${TFTP_PORT}`]));
    const uid = readFileSync(inside('/etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('shoal:'))!.split(':')[2];
    expect(firstProbe.process.uids.split(/\s+/)).toEqual([uid, uid, uid, uid]);
    expect(firstProbe.process.capEff).toBe('0000000000000400'); // CAP_NET_BIND_SERVICE only
    expect(firstProbe.process.noNewPrivs).toBe('1');
    expect(statSync(inside('/var/lib/shoal/shoal.db')).uid).toBe(Number(uid));
  }, 2 * MINUTE);

  it('changes nothing on a second run', async () => {
    const secondRun = await playbook();
    expect(recap(secondRun).failed).toBe(0);
    expect(changedTasks(secondRun)).toEqual([]);
    expect(recap(secondRun).changed).toBe(0);
  }, 8 * MINUTE);

  it('upgrades to a new bundle beside the old release and keeps the data directory', async () => {
    const before = { release: current(), token: readFileSync(inside('/var/lib/shoal/api-token'), 'utf8'), key: readFileSync(inside('/etc/shoal/secret.key')) };
    // A different bundle of the same version, as a rebuild gives: one more file in the manifest.
    const tree = join(work, 'upgrade-tree');
    mkdirSync(tree);
    await sh('tar', ['-C', tree, '-xzf', bundle], MINUTE);
    const manifest = JSON.parse(readFileSync(join(tree, 'manifest.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(tree, 'manifest.json'), JSON.stringify({ ...manifest, rebuiltForTest: true }, null, 2));
    const upgrade = join(work, 'upgrade', basename(bundle));
    mkdirSync(dirname(upgrade));
    await sh('tar', ['-C', tree, '-I', 'gzip -1', '-cf', upgrade, '.'], 2 * MINUTE);
    rmSync(tree, { recursive: true });

    const upgradeRun = await playbook(['-e', `shoal_bundle=${upgrade}`]);
    expect(recap(upgradeRun).failed).toBe(0);
    expect(releases()).toHaveLength(2);
    expect(releases()).toContain(before.release);
    expect(current()).not.toBe(before.release);
    expect(currentManifest()).toMatchObject({ rebuiltForTest: true });
    expect(readFileSync(inside('/var/lib/shoal/api-token'), 'utf8')).toBe(before.token);
    expect(readFileSync(inside('/etc/shoal/secret.key')).equals(before.key)).toBe(true);

    const after = await probe();
    expect(after.nodes).toEqual({ status: 200, names: ['upgrade-witness'] });
    expect(after.images.refs).toEqual(['probe@1']);
  }, 10 * MINUTE);
});

// Run by start-appliance.sh with the installed runtime, inside the head-node root:
//   node probe-api.mjs CONFIG APPLIANCE_PID [--enroll NAME]
// Reads the installed configuration with the installed release's own loader, waits for the API it
// names, and asks what the test checks: the node list with the token and without, the images (over
// HTTPS, trusting only the API's own certificate), an iPXE script (plain HTTP, on the boot port),
// whether the boot port answers for the API, the first block of an iPXE binary over TFTP, which
// UDP ports are bound, and the appliance's user and capabilities. --enroll adds a simulated node
// first. Prints one JSON line.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { dirname } from 'node:path';
import dgram from 'node:dgram';

const [configPath, pidText, ...rest] = process.argv.slice(2);
const pid = Number(pidText);
const enroll = rest[0] === '--enroll' ? rest[1] : undefined;
const current = dirname(dirname(process.execPath));
const { loadConfig } = await import(`${current}/dist/src/config.js`);
const config = loadConfig(configPath);
const base = `https://${config.api.listen}:${config.api.port}`;
const bootBase = `http://${config.boot.listen ?? config.api.listen}:${config.boot.port}`;
const certPath = config.api.tls === 'auto' ? `${config.dataDir}/tls/api.crt` : config.api.tls.cert;
const token = readFileSync(`${config.dataDir}/api-token`, 'utf8').trim();
let fingerprint;

/** fetch's shape over node:https, trusting the API's certificate only (read once it exists). */
function fetchApi(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, ca: readFileSync(certPath) }, (res) => {
      // From the first full handshake: a resumed TLS session presents no certificate.
      fingerprint ??= res.socket.getPeerX509Certificate()?.fingerprint256;
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, ok: res.statusCode < 300, json: async () => JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
const auth = { authorization: `Bearer ${token}` };
const alive = () => {
  try {
    readFileSync(`/proc/${pid}/status`);
    return true;
  } catch {
    return false;
  }
};

const deadline = Date.now() + 60_000;
for (;;) {
  try {
    await fetchApi(`${base}/api/v1/nodes`, { headers: auth });
    break;
  } catch (err) {
    if (!alive()) throw new Error(`the appliance exited before answering at ${base}`);
    if (Date.now() > deadline) throw new Error(`no answer from ${base} within 60 s: ${err.message}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

let enrolled;
if (enroll) {
  const res = await fetchApi(`${base}/api/v1/nodes`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ name: enroll, macs: ['52:54:00:5a:00:01'], bmc: `sim://${enroll}` }),
  });
  enrolled = { status: res.status, body: await res.json() };
}

const nodes = await fetchApi(`${base}/api/v1/nodes`, { headers: auth });
const nodesBody = await nodes.json();
const withoutToken = await fetchApi(`${base}/api/v1/nodes`);
const images = await fetchApi(`${base}/api/v1/images`, { headers: auth });
const imagesBody = images.ok ? await images.json() : { images: [] };
const script = await fetch(`${bootBase}/boot/52:54:00:00:00:01.ipxe`);
const scriptText = await script.text();
const apiOnBootPort = await fetch(`${bootBase}/api/v1/nodes`, { headers: auth });

/** The first DATA block of FILE from the pxe module's TFTP server, then an ERROR to end the transfer. */
async function tftpFirstBlock(file) {
  const tftp = config.modules.find((m) => m.name === 'pxe')?.options.tftp;
  if (!tftp) return undefined;
  const socket = dgram.createSocket('udp4');
  try {
    const reply = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no TFTP reply within 5 s')), 5_000);
      socket.once('message', (data, from) => {
        clearTimeout(timer);
        resolve({ data, from });
      });
      socket.send(Buffer.concat([Buffer.from([0, 1]), Buffer.from(`${file}\0octet\0`)]), tftp.port ?? 69, tftp.address);
    });
    const opcode = reply.data.readUInt16BE(0);
    const abort = Buffer.concat([Buffer.from([0, 5, 0, 0]), Buffer.from('probe done\0')]);
    await new Promise((resolve) => socket.send(abort, reply.from.port, reply.from.address, resolve));
    return { opcode, block: reply.data.readUInt16BE(2), bytes: reply.data.length - 4 };
  } finally {
    socket.close();
  }
}

const udpPorts = readFileSync('/proc/net/udp', 'utf8')
  .split('\n')
  .slice(1)
  .filter(Boolean)
  .map((line) => {
    const [address, port] = line.trim().split(/\s+/)[1].split(':');
    const ip = address.match(/../g).reverse().map((h) => parseInt(h, 16)).join('.');
    return `${ip}:${parseInt(port, 16)}`;
  });
const status = readFileSync(`/proc/${pid}/status`, 'utf8');
const field = (name) => new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(status)?.[1];

console.log(
  JSON.stringify({
    base,
    bootBase,
    fingerprint,
    apiOnBootPortStatus: apiOnBootPort.status,
    enrolled,
    nodes: { status: nodes.status, names: (nodesBody.nodes ?? []).map((n) => n.name) },
    withoutTokenStatus: withoutToken.status,
    images: { status: images.status, refs: (imagesBody.images ?? []).map((i) => `${i.name}@${i.version}`) },
    bootScript: { status: script.status, firstLine: scriptText.split('\n')[0] },
    tftp: await tftpFirstBlock('undionly.kpxe'),
    udpPorts,
    process: { uids: field('Uid'), capEff: field('CapEff'), capAmb: field('CapAmb'), noNewPrivs: field('NoNewPrivs') },
  }),
);

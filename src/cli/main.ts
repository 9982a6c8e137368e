#!/usr/bin/env node
// `shoal`: runs the appliance (`serve`) and drives a running one through its API. This file holds
// the usage and the options and hands each command to its group under commands/.
import { parseArgs } from 'node:util';
import { need, UsageError } from './args.js';
import { ApiClient, ApiError } from './client.js';
import { appliancesCommand } from './commands/appliances.js';
import { discoveredCommand } from './commands/discovered.js';
import { freezeCommand, planCommand, retryCommand } from './commands/engine.js';
import { eventsCommand, watchCommand } from './commands/events.js';
import { imageCommand } from './commands/image.js';
import { exportCommand, importCommand } from './commands/inventory.js';
import { nodeCommand } from './commands/node.js';
import { nodeConfigCommand, profileCommand } from './commands/profile.js';
import { rolloutCommand } from './commands/rollout.js';
import { userCommand } from './commands/user.js';
import { serve } from './serve.js';

const USAGE = `usage: shoal <command> [options]

appliance
  serve [--config FILE] [--data DIR] [--listen ADDR] [--port N] [--demo N]
                                  run the appliance; --demo enrolls N simulated nodes on a new store
  appliances [--json]             the appliances sharing the cluster (* the one answering): networks,
                                  standby, lease holder, epoch, expires in, node count
nodes
  node add NAME --mac MAC [--mac MAC] --bmc URL [--bmc-password P] [--label k=v] [--arch A] [--firmware F]
  node list [--selector k=v,...] [--phase PHASE]
  node show NODE [--json]          identity, desired and observed facet by facet, reported hardware
  node hardware NODE [--json]      what its agent reported: system, CPU, memory, disks
  node kexec-clear NODE            clear the mark of two failed kexecs: reprovisions may kexec again
  node set NODE... facet=value... [--selector k=v] [--wait] [--timeout SECONDS]
                                  facets: power=on|off boot=network|disk run=ready image=NAME@VER
                                  config=current (with the pxe module) (value - clears)
  node rm NODE
  node config NODE [FILE]         the node's effective configuration, each value with the profile (or
                                  the node) that set it; FILE (YAML settings) replaces its own overrides
  import FILE                     enroll every node of an inventory file (YAML), all or none
  discovered list                 machines that network-booted but are not in the inventory (pxe module)
  discovered enroll MAC NAME --bmc URL [--bmc-password P] [--label k=v] [--arch A] [--firmware F]
                                  enroll one as a node (firmware defaults to what its DHCP request said)
  discovered rm MAC               forget one
  export                          print the inventory as YAML (no secrets)
profiles
  profile add NAME FILE | set NAME FILE
                                  create or replace a profile from YAML (priority, selector, nodes,
                                  settings); refused with the file and line when a template does not
                                  render for a node it reaches
  profile list | show NAME | rm NAME
rollouts
  rollout start --selector k=v,... [--max-unavailable N|P%] facet=value... [--no-wait] [--timeout SECONDS]
                                  change the selected nodes a few at a time: at most N (default 1) of
                                  them unavailable at once; shows progress until done (exit 1: failed)
  rollout list                    rollouts with their status and progress
  rollout show ID                 a rollout and each of its nodes
  rollout pause ID | resume ID | cancel ID
                                  pause: nodes under way finish, no new one starts; resume also goes on
                                  from a failure once its failed nodes are released (shoal retry NODE)
images
  image add DIR                   import the image in DIR (its image.json, vmlinuz, initrd.img), read on the appliance host
  image import PATH [--name NAME[@VER]] [--kernel-from NAME@VER] [--init PATH]
                                  import a container image (OCI layout dir, OCI archive or docker save
                                  archive, read on the appliance host), showing progress; its kernel is
                                  its /boot/vmlinuz-*, or a stored image's (--kernel-from); needs the
                                  oci module
  image imports                   container image imports since the appliance started
  image list                      stored images, their digests, sizes and the nodes that want them
  image rm NAME@VER               remove an image no node wants
engine
  plan NODE                       the steps that take NODE from observed to desired, explained
  retry NODE                      release a node held as failed
  freeze [NODE] | thaw [NODE]     stop or resume new steps, for one node or the whole appliance
  events [--after REV] [--node NODE] [--follow]
  watch [--selector k=v]          a live table of nodes
users (admin only)
  user add NAME --role viewer|operator|admin
                                  add an API user; prints its token this once (only its hash is kept)
                                  viewer: reads; operator: also every write; admin: also users
  user list                       users, their roles and who added them
  user rm NAME                    remove a user; its token is refused from then on
common: --url URL (or SHOAL_URL), --token T (or SHOAL_TOKEN), --data DIR (where api-token is)
  an https API: --ca FILE (or SHOAL_CA) trusts a CA or certificate file; --fingerprint SHA256 (or
  SHOAL_FINGERPRINT) pins the certificate shoal serve printed; neither: the system's CAs`;

const options = {
  url: { type: 'string' },
  token: { type: 'string' },
  ca: { type: 'string' },
  fingerprint: { type: 'string' },
  data: { type: 'string' },
  config: { type: 'string' },
  listen: { type: 'string' },
  port: { type: 'string' },
  demo: { type: 'string' },
  mac: { type: 'string', multiple: true },
  bmc: { type: 'string' },
  'bmc-password': { type: 'string' },
  label: { type: 'string', multiple: true },
  arch: { type: 'string' },
  firmware: { type: 'string' },
  selector: { type: 'string' },
  phase: { type: 'string' },
  wait: { type: 'boolean' },
  'no-wait': { type: 'boolean' },
  'max-unavailable': { type: 'string' },
  timeout: { type: 'string' },
  after: { type: 'string' },
  node: { type: 'string' },
  follow: { type: 'boolean' },
  json: { type: 'boolean' },
  role: { type: 'string' },
  name: { type: 'string' },
  'kernel-from': { type: 'string' },
  init: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true });
  const [command, sub, ...rest] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return command || values.help ? 0 : 2;
  }
  if (command === 'serve') return serve(values);
  // `shoal node list | head -1`: a reader that stopped reading is no error; stop as Unix tools do.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(0);
  });
  const client = new ApiClient({ url: values.url, token: values.token, dataDir: values.data, ca: values.ca, fingerprint: values.fingerprint });

  switch (command) {
    case 'node':
      return sub === 'config' ? nodeConfigCommand(client, rest) : nodeCommand(client, sub, rest, values);
    case 'profile':
      return profileCommand(client, sub, rest);
    case 'import':
      return importCommand(client, sub);
    case 'export':
      return exportCommand(client);
    case 'image':
      return imageCommand(client, sub, rest, values);
    case 'discovered':
      return discoveredCommand(client, sub, rest, values);
    case 'rollout':
      return rolloutCommand(client, sub, rest, values);
    case 'plan':
      return planCommand(client, need(sub, 'plan needs a node'));
    case 'retry':
      return retryCommand(client, sub);
    case 'freeze':
    case 'thaw':
      return freezeCommand(client, command, sub);
    case 'events':
      return eventsCommand(client, values);
    case 'watch':
      return watchCommand(client, values.selector);
    case 'user':
      return userCommand(client, sub, rest, values);
    case 'appliances':
      return appliancesCommand(client, values.json);
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) console.error(`shoal: ${err.message}\n\n${USAGE}`);
    else if (err instanceof ApiError) console.error(`shoal: ${err.message}`);
    else console.error(`shoal: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  },
);

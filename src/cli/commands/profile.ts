// `shoal profile …` and `shoal node config …`: profiles written as YAML files (priority, selector,
// nodes, settings) and sent as they are, so the appliance validates them and renders them for every
// node they reach; a node's effective configuration printed value by value with who set it, and its
// own overrides replaced from a YAML file.
import { readFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import type { NodeConfigView, ProfileList, ProfileView } from '../../api/views.js';
import { enc, need, UsageError } from '../args.js';
import type { ApiClient } from '../client.js';
import { formatColumns } from '../table.js';

export async function profileCommand(client: ApiClient, sub: string | undefined, args: string[]): Promise<number> {
  switch (sub) {
    case 'add':
    case 'set': {
      const name = need(args[0], `profile ${sub} needs a name`);
      const body = readYaml(need(args[1], `profile ${sub} needs a YAML file with the profile`));
      const { profiles } = await client.request<ProfileList>('GET', '/profiles');
      const exists = profiles.some((p) => p.name === name);
      if (sub === 'add' && exists) throw new UsageError(`profile ${name} already exists; "profile set ${name} FILE" replaces it`);
      if (sub === 'set' && !exists) throw new UsageError(`there is no profile ${name}; "profile add ${name} FILE" creates it`);
      const profile = await client.request<ProfileView>('PUT', `/profiles/${enc(name)}`, body);
      console.log(`${sub === 'add' ? 'added' : 'replaced'} profile ${profile.name}; it reaches ${reachLine(profile)}`);
      return 0;
    }
    case 'list': {
      const { profiles } = await client.request<ProfileList>('GET', '/profiles');
      console.log(formatColumns(['PROFILE', 'PRIORITY', 'SELECTOR', 'NODES', 'REACHES', 'SETS'], profiles.map((p) => [p.name, String(p.priority), p.selector ?? '-', p.nodes.join(',') || '-', String(p.reaches.length), Object.keys(p.settings).join(',') || '-'])));
      return 0;
    }
    case 'show': {
      const profile = await client.request<ProfileView>('GET', `/profiles/${enc(need(args[0], 'profile show needs a name'))}`);
      process.stdout.write(stringify(profile));
      return 0;
    }
    case 'rm': {
      const name = need(args[0], 'profile rm needs a name');
      await client.request('DELETE', `/profiles/${enc(name)}`);
      console.log(`removed profile ${name}`);
      return 0;
    }
    default:
      throw new UsageError(`unknown profile command "${sub ?? ''}"`);
  }
}

/** `node config NODE` prints the effective configuration; `node config NODE FILE` first replaces the node's own overrides. */
export async function nodeConfigCommand(client: ApiClient, args: string[]): Promise<number> {
  const node = need(args[0], 'node config needs a node');
  const path = `/nodes/${enc(node)}/config`;
  const config = args[1] ? await client.request<NodeConfigView>('PUT', path, readYaml(args[1])) : await client.request<NodeConfigView>('GET', path);
  console.log(`node ${config.node}: profiles ${config.profiles.join(', ') || '(none)'}, then its own overrides; digest ${config.digest.slice(0, 16)}`);
  console.log(formatColumns(['SETTING', 'VALUE', 'FROM'], Object.entries(config.sources).map(([key, from]) => [key, valueAt(config.settings, key), from])));
  return 0;
}

function reachLine(profile: ProfileView): string {
  const n = profile.reaches.length;
  return n === 0 ? 'no node yet' : `${n} node${n === 1 ? '' : 's'}: ${profile.reaches.slice(0, 8).join(', ')}${n > 8 ? ', …' : ''}`;
}

function readYaml(file: string): unknown {
  try {
    return parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UsageError(`${file}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
}

/** A source key's value, shortened to one line: `image`, `network.gateway`; a list item's key is its own value, a file's its first line. */
function valueAt(settings: Record<string, unknown>, key: string): string {
  const item = /^([a-zA-Z.]+):(.*)$/.exec(key);
  if (item) {
    const [, list, id] = item as unknown as [string, string, string];
    if (list === 'files') {
      const file = (settings.files as { path: string; content: string; mode: string }[]).find((f) => f.path === id);
      return file ? `${file.mode} ${oneLine(file.content)}` : '';
    }
    return list === 'network.interfaces' ? id : oneLine(id);
  }
  const value = key.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], settings);
  return oneLine(typeof value === 'string' ? value : JSON.stringify(value));
}

function oneLine(text: string): string {
  const first = text.split('\n')[0]!;
  return first.length > 60 || text.includes('\n') ? `${first.slice(0, 57)}…` : first;
}

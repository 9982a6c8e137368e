// Profiles (src/state/profiles.ts): named settings that reach nodes by label selector and by name.
// The list says whom each reaches; the editor saves with PUT, and a refusal (a template that does
// not render for a node, a field the API does not take) is shown beside the form as the API said
// it, with the form as the operator left it.
import { Fragment } from 'preact';
import { useMemo, useState } from 'preact/hooks';
import { parse, stringify } from 'yaml';
import { ApiError, api } from './api.js';
import { describeError, removeProfileAction, type ActionSpec } from './actions.js';
import type { Cluster } from './cluster.js';
import { formatTime } from './format.js';
import { nodeHref, profileHref, useCluster, useRead, useRereadOn } from './hooks.js';
import type { EventView, ProfileInput, ProfileList, ProfileView, Settings } from '../../src/api/views.js';

const NAMES_SHOWN = 5;

/** A profile's reach follows its own records and the nodes' labels. */
const touchesProfiles = (e: EventView) => e.kind === 'profile' || e.kind === 'node';

/** Node ids by name: the API names the nodes a profile reaches, the node page is by id. */
function useNodeIds(cluster: Cluster): Map<string, string> {
  const version = useCluster(cluster);
  return useMemo(() => new Map([...cluster.nodes.values()].map((n) => [n.name, n.id])), [version]);
}

function NodeLinks({ names, ids }: { names: string[]; ids: Map<string, string> }) {
  if (names.length === 0) return <span class="muted">no node</span>;
  return (
    <span>
      {names.length} node{names.length === 1 ? '' : 's'}:{' '}
      {names.slice(0, NAMES_SHOWN).map((name, i) => {
        const id = ids.get(name);
        return (
          <Fragment key={name}>
            {i > 0 && ', '}
            {id ? <a href={nodeHref(id)}>{name}</a> : name}
          </Fragment>
        );
      })}
      {names.length > NAMES_SHOWN && <span class="muted">, … {names.length - NAMES_SHOWN} more</span>}
    </span>
  );
}

export function ProfilesPage({ cluster }: { cluster: Cluster }) {
  const ids = useNodeIds(cluster);
  const read = useRead<ProfileList>('/profiles');
  useRereadOn(cluster, touchesProfiles, read.reload);
  const profiles = read.value?.profiles;
  return (
    <section class="profiles-view">
      <h1>Profiles</h1>
      <p class="muted">
        A node merges the profiles that reach it by priority (lower first, so a higher one wins), then by name, then its own overrides.{' '}
        <a href="#/profile" class="button-link">
          New profile
        </a>
      </p>
      {read.error !== null && (
        <p class="error" role="alert">
          {describeError(read.error)}
        </p>
      )}
      {profiles?.length === 0 && <p data-testid="profiles-empty">No profile yet.</p>}
      {profiles && profiles.length > 0 && (
        <table class="profiles" data-testid="profiles">
          <thead>
            <tr>
              <th>profile</th>
              <th>priority</th>
              <th>selector</th>
              <th>by name</th>
              <th>reaches</th>
              <th>changed</th>
            </tr>
          </thead>
          <tbody>
            {profiles.map((p) => (
              <tr key={p.name} data-profile={p.name}>
                <td>
                  <a href={profileHref(p.name)}>
                    <b>{p.name}</b>
                  </a>
                </td>
                <td>{p.priority}</td>
                <td>{p.selector !== undefined ? <code>{p.selector}</code> : <span class="muted">none</span>}</td>
                <td>{p.nodes.length > 0 ? p.nodes.join(', ') : <span class="muted">none</span>}</td>
                <td class="reaches" data-count={p.reaches.length}>
                  <NodeLinks names={p.reaches} ids={ids} />
                </td>
                <td class="muted">
                  {formatTime(p.updatedAt)} by {p.updatedBy}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** The form's fields as typed: lists one per line (kernel arguments on one line), nested settings as YAML. */
interface Draft {
  name: string;
  priority: string;
  selector: string;
  nodes: string;
  image: string;
  hostname: string;
  kernelArgs: string;
  sshAuthorizedKeys: string;
  userData: string;
  files: string;
  network: string;
}

function draftOf(profile: ProfileView | null): Draft {
  // The view's settings are what the API parsed and stored, so they are Settings.
  const s = (profile?.settings ?? {}) as Settings;
  return {
    name: profile?.name ?? '',
    priority: String(profile?.priority ?? 0),
    selector: profile?.selector ?? '',
    nodes: profile?.nodes.join('\n') ?? '',
    image: s.image ?? '',
    hostname: s.hostname ?? '',
    kernelArgs: s.kernelArgs?.join(' ') ?? '',
    sshAuthorizedKeys: s.sshAuthorizedKeys?.join('\n') ?? '',
    userData: s.userData ?? '',
    files: s.files ? stringify(s.files) : '',
    network: s.network ? stringify(s.network) : '',
  };
}

const lines = (text: string) => text.split('\n').map((l) => l.trim()).filter(Boolean);

/**
 * The PUT body, or what keeps the page from sending one (YAML it cannot parse). Everything else is
 * the API's to judge: a blank field is left out, the rest is sent as typed.
 */
function inputOf(d: Draft): ProfileInput | string {
  const settings: Record<string, unknown> = {};
  if (d.image.trim()) settings.image = d.image.trim();
  if (d.hostname.trim()) settings.hostname = d.hostname.trim();
  if (d.kernelArgs.trim()) settings.kernelArgs = d.kernelArgs.trim().split(/\s+/);
  if (d.sshAuthorizedKeys.trim()) settings.sshAuthorizedKeys = lines(d.sshAuthorizedKeys);
  if (d.userData.trim()) settings.userData = d.userData;
  for (const key of ['files', 'network'] as const) {
    if (!d[key].trim()) continue;
    try {
      const value: unknown = parse(d[key]);
      if (value !== null) settings[key] = value;
    } catch (err) {
      return `${key}: not YAML (nothing was sent): ${(err as Error).message}`;
    }
  }
  return {
    ...(d.priority.trim() ? { priority: Number(d.priority) } : {}),
    ...(d.selector.trim() ? { selector: d.selector.trim() } : {}),
    nodes: lines(d.nodes.replaceAll(',', '\n')),
    settings: settings as ProfileInput['settings'],
  };
}

const FILES_EXAMPLE = `- path: /etc/slurm/node.conf
  mode: "0644"
  content: |
    NodeName={{ name }} Rack={{ labels.rack }}`;
const NETWORK_EXAMPLE = `address: reservation
prefix: 24
gateway: 10.0.0.1
dns: [10.0.0.2]`;

export function ProfilePage({ cluster, name, onAction }: { cluster: Cluster; name: string; onAction: (a: ActionSpec) => void }) {
  const read = useRead<ProfileView>(`/profiles/${encodeURIComponent(name)}`);
  useRereadOn(cluster, touchesProfiles, read.reload);
  const gone = read.error instanceof ApiError && read.error.status === 404;
  return (
    <section class="profile-view" data-profile={name}>
      <h1>
        <a href="#/profiles">Profiles</a> / {name}
      </h1>
      {gone && <p data-testid="profile-gone">No profile named {name}{read.value ? ' any more: it was removed since this page read it. The form keeps what it held.' : '.'}</p>}
      {read.error !== null && !gone && <p class="error">{describeError(read.error)}</p>}
      {read.value ? <ProfileEditor cluster={cluster} current={read.value} onSaved={read.reload} onAction={onAction} /> : read.error === null && <p class="muted">Reading…</p>}
    </section>
  );
}

export function NewProfilePage({ cluster, onAction }: { cluster: Cluster; onAction: (a: ActionSpec) => void }) {
  return (
    <section class="profile-view">
      <h1>
        <a href="#/profiles">Profiles</a> / new profile
      </h1>
      <ProfileEditor cluster={cluster} current={null} onAction={onAction} />
    </section>
  );
}

/** A profile's fields, its reach as saved, and save and remove; `current` is null for a new one. */
function ProfileEditor({ cluster, current, onSaved, onAction }: { cluster: Cluster; current: ProfileView | null; onSaved?: () => void; onAction: (a: ActionSpec) => void }) {
  const ids = useNodeIds(cluster);
  const creating = current === null;
  const [draft, setDraft] = useState(() => draftOf(current));
  /** `updatedAt` of the version the form started from, to tell a change made elsewhere. */
  const [basedOn, setBasedOn] = useState(current?.updatedAt ?? null);
  const [problem, setProblem] = useState<string | null>(null);
  const [conflict, setConflict] = useState<string | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const field = (key: keyof Draft) => ({ name: key, value: draft[key], onInput: (e: { currentTarget: { value: string } }) => setDraft({ ...draft, [key]: e.currentTarget.value }) });
  const changedBy = (p: ProfileView) => `changed by ${p.updatedBy} at ${formatTime(p.updatedAt)}`;
  const changedElsewhere = current !== null && basedOn !== null && Date.parse(current.updatedAt) > Date.parse(basedOn);
  const warning = conflict ?? (changedElsewhere ? `This profile was ${changedBy(current)} since this form was loaded.` : null);

  const save = async (force: boolean) => {
    setSaved(null);
    setConflict(null);
    const input = inputOf(draft);
    if (typeof input === 'string') return setProblem(input);
    setProblem(null);
    setSaving(true);
    const path = `/profiles/${encodeURIComponent(draft.name.trim())}`;
    try {
      if (!force) {
        // PUT replaces whatever is there, and the API takes no revision to check it against: read
        // it first, so a change made (or a name taken) since the form was loaded is not overwritten
        // unseen. A write landing between the two requests is still overwritten.
        const there = await api<ProfileView>('GET', path).catch((err: unknown) => {
          if (err instanceof ApiError && err.status === 404) return null;
          throw err;
        });
        const why = creating
          ? there && `A profile named ${there.name} exists already (${changedBy(there)}); saving replaces it.`
          : there === null
            ? 'This profile was removed since this form was loaded; saving creates it again.'
            : there.updatedAt !== basedOn && `This profile was ${changedBy(there)} since this form was loaded; saving replaces that version.`;
        if (why) return setConflict(why);
      }
      const result = await api<ProfileView>('PUT', path, input);
      if (creating) {
        location.hash = profileHref(result.name);
        return;
      }
      setBasedOn(result.updatedAt);
      setDraft(draftOf(result));
      setSaved(`Saved at ${formatTime(result.updatedAt)}; it reaches ${result.reaches.length} node${result.reaches.length === 1 ? '' : 's'}.`);
      onSaved?.();
    } catch (err) {
      setProblem(describeError(err));
    } finally {
      setSaving(false);
    }
  };

  return (
    <div class="columns">
      <form
        class="profile-form"
        onSubmit={(e) => {
          e.preventDefault();
          void save(false);
        }}
      >
        <label>
          name
          <input {...field('name')} readOnly={!creating} placeholder="e.g. compute" title={creating ? '' : 'a profile is renamed by creating one under the new name and removing this one'} />
        </label>
        <label>
          priority <small>lower merges first, so a higher one wins</small>
          <input {...field('priority')} type="number" step={1} />
        </label>
        <label class="wide">
          selector <small>labels, e.g. role=compute,rack!=r9</small>
          <input {...field('selector')} placeholder="none: only the nodes named below" />
        </label>
        <label class="wide">
          nodes <small>reached by name whatever their labels, one per line</small>
          <textarea {...field('nodes')} rows={2} />
        </label>
        <label>
          image <small>booted when a node's desired state names none</small>
          <input {...field('image')} placeholder="name@version" />
        </label>
        <label>
          hostname <small>a template</small>
          <input {...field('hostname')} placeholder="{{ name }}.lab" />
        </label>
        <label class="wide">
          kernel arguments <small>separated by spaces; they add to other profiles'</small>
          <input {...field('kernelArgs')} placeholder="console=ttyS0,115200" />
        </label>
        <label class="wide">
          SSH authorized keys <small>one per line; they add to other profiles'</small>
          <textarea {...field('sshAuthorizedKeys')} rows={3} placeholder="ssh-ed25519 AAAA… ops@site" />
        </label>
        <label class="wide">
          user-data <small>cloud-config, a template; starts with #cloud-config</small>
          <textarea {...field('userData')} class="code" rows={6} placeholder={'#cloud-config\npackages: [htop]'} />
        </label>
        <label class="wide">
          files <small>YAML: a list of path, content (a template), mode, owner</small>
          <textarea {...field('files')} class="code" rows={8} placeholder={FILES_EXAMPLE} />
        </label>
        <label class="wide">
          network <small>YAML: address (reservation or a CIDR), prefix, gateway, dns, mtu, interfaces</small>
          <textarea {...field('network')} class="code" rows={5} placeholder={NETWORK_EXAMPLE} />
        </label>
        {problem && (
          <p class="error problem" role="alert" data-testid="profile-problem">
            {problem}
          </p>
        )}
        {warning && (
          <div class="warning" data-testid="profile-conflict">
            <p>{warning}</p>
            <div class="buttons">
              <button type="button" onClick={() => void save(true)} disabled={saving}>
                Save mine anyway
              </button>
              {current && changedElsewhere && (
                <button
                  type="button"
                  onClick={() => {
                    setDraft(draftOf(current));
                    setBasedOn(current.updatedAt);
                    setConflict(null);
                  }}
                >
                  Load theirs (drops my edits)
                </button>
              )}
            </div>
          </div>
        )}
        {saved && (
          <p role="status" data-testid="profile-saved">
            {saved}
          </p>
        )}
        <div class="buttons">
          <button type="submit" class="primary" disabled={saving || draft.name.trim() === ''}>
            {saving ? 'Saving…' : creating ? 'Create' : 'Save'}
          </button>
          {current && (
            <button
              type="button"
              onClick={() =>
                onAction(
                  removeProfileAction(current, () => {
                    location.hash = '#/profiles';
                  }),
                )
              }
            >
              Remove…
            </button>
          )}
        </div>
      </form>
      <div>
        <h2>Reaches</h2>
        {current ? (
          <>
            <p data-testid="profile-reaches" data-count={current.reaches.length}>
              <NodeLinks names={current.reaches} ids={ids} />
            </p>
            <p class="muted">As saved: changes in the form count once saved.</p>
            <h2>Changed</h2>
            <p class="muted">
              {formatTime(current.updatedAt)} by {current.updatedBy}
            </p>
          </>
        ) : (
          <p class="muted">Once created: the nodes its selector matches and the nodes it names.</p>
        )}
        <h2>Templates</h2>
        <p class="muted">
          Hostname, user-data and file contents are <a href="https://liquidjs.com">liquid</a> templates with the node's <code>name</code>, <code>id</code>,{' '}
          <code>macs</code>, <code>mac</code>, <code>address</code> and <code>labels</code>. The appliance renders them for every node the profile reaches before it
          saves, and refuses with the file and line when one does not render.
        </p>
      </div>
    </div>
  );
}

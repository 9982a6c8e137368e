// The profiles and each node's own configuration overrides, kept as `profile` records in the event
// log (so every change is revisioned with its writer and survives restarts), and the effective
// configuration and NoCloud seed of a node computed from them. Every save renders what it changes
// for every node it reaches first, so a template error is refused with its profile, file and line
// and never reaches a node at boot.
import type { NodeId, NodeRecord } from '../domain/node.js';
import { renderSeed, type NoCloudSeed } from '../domain/nocloud.js';
import { effectiveConfig, profileReaches, ProfileInputSchema, ProfileNameSchema, SettingsSchema, type EffectiveConfig, type Profile, type Settings } from '../domain/profile.js';
import { SAMPLE_NODE, TemplateError } from '../domain/templates.js';
import { NotFoundError, type ClusterState, type RecordChange } from './cluster-state.js';
import type { Fact } from './store.js';
import { InventoryError } from './inventory.js';

/** The facet (key) of a node's own overrides among its `profile` records; a profile record has no node. */
export const NODE_OVERRIDES_KEY = 'node';

export interface ProfileEntry {
  profile: Profile;
  updatedAt: number;
  updatedBy: string;
}

/** A save refused because a template does not render for a node it reaches. */
export class ProfileRenderError extends Error {
  constructor(
    readonly profile: string,
    readonly node: string,
    readonly template: TemplateError,
  ) {
    super(`${template.message} (rendering for node ${node})`);
  }
}

export class ProfileDirectory {
  private readonly profiles = new Map<string, ProfileEntry>();
  private readonly overrides = new Map<NodeId, Settings>();

  constructor(private readonly state: ClusterState) {
    for (const fact of state.loadedRecords('profile')) this.remember(fact);
    // The store drops a removed node's records with it; so does memory.
    state.on('node', this.forgetRemoved);
    state.on('record', this.followOthers);
  }

  private remember(fact: Fact): void {
    if (fact.nodeId === null) {
      this.profiles.set(fact.facet, { profile: { name: fact.facet, ...ProfileInputSchema.parse(JSON.parse(fact.value)) }, updatedAt: fact.at, updatedBy: fact.writer });
    } else if (fact.facet === NODE_OVERRIDES_KEY) {
      this.overrides.set(fact.nodeId, SettingsSchema.parse(JSON.parse(fact.value)));
    }
  }

  /** A profile or overrides changed through another appliance: the nodes it reached before and reaches now re-plan, as after a save here. */
  private readonly followOthers = ({ kind, nodeId, key, fact }: RecordChange): void => {
    if (kind !== 'profile') return;
    if (nodeId !== null) {
      if (key !== NODE_OVERRIDES_KEY) return;
      if (fact) this.remember(fact);
      else this.overrides.delete(nodeId);
      this.touch([nodeId]);
      return;
    }
    const before = this.profiles.get(key);
    if (fact) this.remember(fact);
    else this.profiles.delete(key);
    const after = this.profiles.get(key);
    this.touch([...(before ? this.reachedIds(before.profile) : []), ...(after ? this.reachedIds(after.profile) : [])]);
  };

  private readonly forgetRemoved = (id: NodeId): void => {
    if (!this.state.node(id)) this.overrides.delete(id);
  };

  /** Stops following the cluster state (the appliance is stopping). */
  close(): void {
    this.state.off('node', this.forgetRemoved);
    this.state.off('record', this.followOthers);
  }

  list(): ProfileEntry[] {
    return [...this.profiles.values()].sort((a, b) => a.profile.name.localeCompare(b.profile.name));
  }

  get(name: string): ProfileEntry {
    const entry = this.profiles.get(name);
    if (!entry) throw new NotFoundError(`no profile named "${name}"`);
    return entry;
  }

  /** The nodes a profile reaches, by name. */
  reaches(profile: Profile): string[] {
    return this.state
      .list()
      .filter((n) => profileReaches(profile, n))
      .map((n) => n.name)
      .sort();
  }

  /** Creates or replaces a profile once it renders for every node it reaches; durable when it resolves. */
  async put(name: string, input: unknown, writer: string): Promise<{ entry: ProfileEntry; created: boolean }> {
    ProfileNameSchema.parse(name);
    const profile: Profile = { name, ...ProfileInputSchema.parse(input) };
    const candidate = new Map([...this.profilesByName(), [name, profile]]);
    const reached = this.state.list().filter((n) => profileReaches(profile, n));
    for (const node of reached) this.check(name, node, candidate.values(), this.overrides.get(node.id));
    // A profile that reaches no node yet is still checked, against a node with every field set.
    if (reached.length === 0) this.check(name, { ...SAMPLE_NODE, labels: sampleLabels(profile) }, [profile], undefined);
    const previous = this.profiles.get(name);
    const entry: ProfileEntry = { profile, updatedAt: Date.now(), updatedBy: writer };
    this.state.record('profile', null, name, previous ? JSON.stringify(storedOf(previous.profile)) : null, JSON.stringify(storedOf(profile)), null, writer);
    this.profiles.set(name, entry);
    await this.state.flush();
    this.touch(reached.map((n) => n.id).concat(previous ? this.reachedIds(previous.profile) : []));
    return { entry, created: !previous };
  }

  async remove(name: string, writer: string): Promise<void> {
    const entry = this.get(name);
    this.state.record('profile', null, name, JSON.stringify(storedOf(entry.profile)), null, null, writer);
    this.profiles.delete(name);
    await this.state.flush();
    this.touch(this.reachedIds(entry.profile));
  }

  /** The node's own settings, merged over its profiles. */
  overridesOf(id: NodeId): Settings {
    return this.overrides.get(id) ?? {};
  }

  /** Replaces the node's own settings once its whole configuration renders. */
  async setOverrides(node: NodeRecord, input: unknown, writer: string): Promise<Settings> {
    const settings = SettingsSchema.parse(input);
    this.check(undefined, node, this.profilesByName().values(), settings);
    const previous = this.overrides.get(node.id);
    const empty = Object.keys(settings).length === 0;
    this.state.record('profile', node.id, NODE_OVERRIDES_KEY, previous ? JSON.stringify(previous) : null, empty ? null : JSON.stringify(settings), null, writer);
    if (empty) this.overrides.delete(node.id);
    else this.overrides.set(node.id, settings);
    await this.state.flush();
    this.touch([node.id]);
    return settings;
  }

  /**
   * Refuses an inventory import, before anything is written, when one of its profiles exists already
   * or when any node it adds, or any node one of its profiles reaches, would not render.
   */
  checkImport(nodes: { node: NodeRecord; config?: Settings; line: number }[], imported: { profile: Profile; line: number }[]): void {
    const problems: { line: number; message: string }[] = [];
    for (const { profile, line } of imported) if (this.profiles.has(profile.name)) problems.push({ line, message: `a profile named ${profile.name} already exists` });
    const candidate = [...this.profilesByName().values(), ...imported.map((i) => i.profile)];
    const lineOf = new Map(imported.map((i) => [i.profile.name, i.line]));
    const attempt = (line: number, profile: string | undefined, node: NodeRecord, profiles: Iterable<Profile>, overrides: Settings | undefined) => {
      try {
        this.check(profile, node, profiles, overrides);
      } catch (err) {
        if (!(err instanceof ProfileRenderError)) throw err;
        problems.push({ line: lineOf.get(err.profile) ?? line, message: err.message });
      }
    };
    for (const { node, config, line } of nodes) attempt(line, undefined, node, candidate, config);
    for (const { profile, line } of imported) {
      const reached = this.state.list().filter((n) => profileReaches(profile, n));
      for (const node of reached) attempt(line, profile.name, node, candidate, this.overrides.get(node.id));
      if (reached.length === 0 && !nodes.some(({ node }) => profileReaches(profile, node))) attempt(line, profile.name, { ...SAMPLE_NODE, labels: sampleLabels(profile) }, [profile], undefined);
    }
    if (problems.length > 0) throw new InventoryError(problems);
  }

  /** Writes what checkImport passed: the profiles and the imported nodes' overrides, in one batch. */
  async addImported(profiles: Profile[], overrides: { node: NodeRecord; config: Settings }[], writer: string): Promise<void> {
    for (const profile of profiles) {
      this.state.record('profile', null, profile.name, null, JSON.stringify(storedOf(profile)), null, writer);
      this.profiles.set(profile.name, { profile, updatedAt: Date.now(), updatedBy: writer });
    }
    for (const { node, config } of overrides) {
      if (Object.keys(config).length === 0) continue;
      this.state.record('profile', node.id, NODE_OVERRIDES_KEY, null, JSON.stringify(config), null, writer);
      this.overrides.set(node.id, config);
    }
    await this.state.flush();
    this.touch(this.state.list().filter((n) => profiles.some((p) => profileReaches(p, n))).map((n) => n.id).concat(overrides.map((o) => o.node.id)));
  }

  /** Refuses a node (about to be enrolled or changed) whose configuration would not render. */
  checkNode(node: NodeRecord): void {
    this.check(undefined, node, this.profilesByName().values(), this.overrides.get(node.id));
  }

  effective(node: NodeRecord): EffectiveConfig {
    return effectiveConfig(node, this.profilesByName().values(), this.overrides.get(node.id));
  }

  /** What cloud-init reads for this node now. Checked at every save, so it renders. */
  seed(node: NodeRecord): NoCloudSeed {
    return renderSeed(node, this.effective(node));
  }

  private check(profile: string | undefined, node: NodeRecord, profiles: Iterable<Profile>, overrides: Settings | undefined): void {
    try {
      renderSeed(node, effectiveConfig(node, profiles, overrides));
    } catch (err) {
      if (err instanceof TemplateError) throw new ProfileRenderError(profile ?? 'node', node.name, err);
      throw err;
    }
  }

  private profilesByName(): Map<string, Profile> {
    return new Map([...this.profiles].map(([name, e]) => [name, e.profile]));
  }

  private reachedIds(profile: Profile): NodeId[] {
    return this.state
      .list()
      .filter((n) => profileReaches(profile, n))
      .map((n) => n.id);
  }

  /** A node's configuration changed: whoever watches nodes (the engine, the dashboard) hears of it. */
  private touch(ids: NodeId[]): void {
    for (const id of new Set(ids)) this.state.emit('node', id);
  }
}

function storedOf(profile: Profile): Omit<Profile, 'name'> {
  const { name: _name, ...stored } = profile;
  return stored;
}

/** Labels the sample node needs to be reached by the selector's equality terms, so templates using them render. */
function sampleLabels(profile: Profile): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const term of (profile.selector ?? '').split(',')) {
    const m = /^\s*([^=!]+?)\s*=\s*(.*?)\s*$/.exec(term);
    if (m) labels[m[1]!] = m[2]!;
  }
  return labels;
}


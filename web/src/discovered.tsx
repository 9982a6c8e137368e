// Machines that network-booted but are not in the inventory, as the pxe module records them; each
// can be enrolled as a node or dismissed. Nothing in the event stream says a machine was seen, so
// the list is re-read every few seconds while the view is open.
import { useState } from 'preact/hooks';
import { ApiError } from './api.js';
import { usePolledRead } from './hooks.js';
import { describeError, dismissAction, enrollAction, type ActionSpec } from './actions.js';
import type { Cluster } from './cluster.js';
import { ago, formatTime } from './format.js';
import type { DiscoveredView, NodeInput } from '../../src/api/views.js';

const POLL_MS = 3_000;
/** src/domain/node.ts: what a node name may be. */
const NODE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** RFC 4578 architectures that are 64-bit ARM (UEFI, UEFI HTTP boot); every other one boots x86. */
const ARM64_ARCHS = new Set([11, 19]);

type Listing = { kind: 'loading' } | { kind: 'listed'; machines: DiscoveredView[]; at: number } | { kind: 'no-pxe' } | { kind: 'error'; message: string };

export function DiscoveredPage({ cluster, onAction }: { cluster: Cluster; onAction: (a: ActionSpec) => void }) {
  const read = usePolledRead<{ discovered: DiscoveredView[] }>('/discovered', POLL_MS);
  const [enrolling, setEnrolling] = useState<string | null>(null);
  const reload = read.reload;
  const listing: Listing =
    read.error instanceof ApiError && read.error.status === 404
      ? { kind: 'no-pxe' }
      : read.error
        ? { kind: 'error', message: describeError(read.error) }
        : read.value
          ? { kind: 'listed', machines: read.value.discovered, at: read.at }
          : { kind: 'loading' };

  return (
    <section class="discovered-view">
      <h1>Discovered machines</h1>
      {listing.kind === 'loading' && <p class="muted">Reading…</p>}
      {listing.kind === 'no-pxe' && (
        <p data-testid="discovered-message">
          Discovery needs the pxe module: it records the machines that network-boot without being in the inventory. Add <code>pxe</code> to the appliance's
          modules to see them here.
        </p>
      )}
      {listing.kind === 'error' && (
        <p class="error" role="alert">
          {listing.message}
        </p>
      )}
      {listing.kind === 'listed' && (
        <>
          <p class="muted">
            Machines that asked to network-boot but are in no node's MACs. Read {formatTime(listing.at)}, again every {POLL_MS / 1000} s.{' '}
            <button type="button" class="quiet" onClick={() => void reload()}>
              Refresh
            </button>
          </p>
          {listing.machines.length === 0 ? (
            <p data-testid="discovered-empty">No machine is waiting to be enrolled.</p>
          ) : (
            <table class="discovered" data-testid="discovered">
              <thead>
                <tr>
                  <th>MAC</th>
                  <th>firmware</th>
                  <th>address</th>
                  <th>hostname</th>
                  <th>vendor class</th>
                  <th>first seen</th>
                  <th>last seen</th>
                  <th>requests</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {listing.machines.map((m) => [
                  <tr key={m.mac} data-mac={m.mac} class={enrolling === m.mac ? 'picked' : ''}>
                    <td>
                      <code>{m.mac}</code>
                    </td>
                    <td title={m.arch !== undefined ? `client architecture ${m.arch} (RFC 4578)` : 'the firmware did not say'}>{m.firmware ?? '—'}</td>
                    <td>{m.ip ?? '—'}</td>
                    <td>{m.hostname ?? '—'}</td>
                    <td class="muted">{m.vendorClassId ?? '—'}</td>
                    <td>{formatTime(m.firstSeen)}</td>
                    <td title={formatTime(m.lastSeen)}>{ago(m.lastSeen, listing.at)}</td>
                    <td>{m.requests}</td>
                    <td>
                      <div class="row-actions">
                        <button type="button" onClick={() => setEnrolling(enrolling === m.mac ? null : m.mac)}>
                          Enroll…
                        </button>
                        <button type="button" onClick={() => onAction(dismissAction(m, () => void reload()))}>
                          Dismiss…
                        </button>
                      </div>
                    </td>
                  </tr>,
                  enrolling === m.mac && (
                    <tr key={`${m.mac}-enroll`} class="enroll-row">
                      <td colSpan={9}>
                        <EnrollForm machine={m} onSubmit={(input) => onAction(enrollAction(cluster, m, input, () => void reload()))} onCancel={() => setEnrolling(null)} />
                      </td>
                    </tr>
                  ),
                ])}
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}

/** `rack=r1, role=compute` into labels, or what is wrong with it. */
function parseLabels(raw: string): Record<string, string> | string {
  const labels: Record<string, string> = {};
  for (const term of raw.split(',').map((t) => t.trim()).filter(Boolean)) {
    const eq = term.indexOf('=');
    if (eq <= 0) return `"${term}" is not key=value`;
    labels[term.slice(0, eq).trim()] = term.slice(eq + 1).trim();
  }
  return labels;
}

function EnrollForm({ machine, onSubmit, onCancel }: { machine: DiscoveredView; onSubmit: (input: NodeInput) => void; onCancel: () => void }) {
  const hostname = machine.hostname?.toLowerCase().split('.')[0] ?? '';
  const [name, setName] = useState(NODE_NAME.test(hostname) ? hostname : '');
  const [bmc, setBmc] = useState('');
  const [password, setPassword] = useState('');
  const [labels, setLabels] = useState('');
  const [arch, setArch] = useState<'x86_64' | 'arm64'>(machine.arch !== undefined && ARM64_ARCHS.has(machine.arch) ? 'arm64' : 'x86_64');
  const [firmware, setFirmware] = useState<'auto' | 'bios' | 'uefi'>(machine.firmware ?? 'auto');
  const [ipv4, setIpv4] = useState('');
  const parsedLabels = parseLabels(labels);
  const ready = name.trim() !== '' && bmc.trim() !== '' && typeof parsedLabels !== 'string';
  return (
    <form
      class="enroll-form"
      onSubmit={(e) => {
        e.preventDefault();
        if (!ready || typeof parsedLabels === 'string') return;
        onSubmit({
          name: name.trim(),
          macs: [machine.mac],
          bmc: bmc.trim(),
          ...(password ? { bmcPassword: password } : {}),
          arch,
          firmware,
          ...(ipv4.trim() ? { ipv4: ipv4.trim() } : {}),
          labels: parsedLabels,
        });
      }}
    >
      <label>
        name
        <input name="name" placeholder="e.g. c001" value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label class="wide">
        BMC
        <input name="bmc" placeholder="ipmi://admin@10.0.0.101 or redfish://admin@10.0.0.101" value={bmc} onInput={(e) => setBmc(e.currentTarget.value)} />
      </label>
      <label>
        BMC password
        <input type="password" name="bmc-password" autocomplete="off" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
      </label>
      <label>
        labels
        <input name="labels" placeholder="rack=r1, role=compute" value={labels} onInput={(e) => setLabels(e.currentTarget.value)} />
      </label>
      <label>
        arch
        <select name="arch" value={arch} onChange={(e) => setArch(e.currentTarget.value as typeof arch)}>
          <option value="x86_64">x86_64</option>
          <option value="arm64">arm64</option>
        </select>
      </label>
      <label>
        firmware
        <select name="firmware" value={firmware} onChange={(e) => setFirmware(e.currentTarget.value as typeof firmware)}>
          <option value="auto">auto</option>
          <option value="bios">bios</option>
          <option value="uefi">uefi</option>
        </select>
      </label>
      <label>
        address
        <input name="ipv4" placeholder={machine.ip ? `optional, leased ${machine.ip}` : 'optional'} value={ipv4} onInput={(e) => setIpv4(e.currentTarget.value)} />
      </label>
      <div class="buttons">
        <button type="submit" class="primary" disabled={!ready}>
          Enroll…
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
      {typeof parsedLabels === 'string' && <p class="error">labels: {parsedLabels}</p>}
    </form>
  );
}

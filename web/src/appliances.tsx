// The appliances of the cluster (GET /api/v1/appliances): their networks, whom each stands by for,
// who holds the lease on its nodes at which epoch and for how long, and how many nodes are its
// own. Leases change without an event on the stream, so the list is re-read while the view is open.
import { describeError } from './actions.js';
import { formatTime } from './format.js';
import { usePolledRead } from './hooks.js';
import type { ApplianceList, ApplianceView } from '../../src/api/views.js';

const POLL_MS = 2_000;

export function AppliancesPage() {
  const { value: list, error, at } = usePolledRead<ApplianceList>('/appliances', POLL_MS);
  return (
    <section class="appliances-view">
      <h1>Appliances</h1>
      {!list && !error && <p class="muted">Reading…</p>}
      {error && (
        <p class="error" role="alert">
          {describeError(error)}
        </p>
      )}
      {list && (
        <>
          <p class="muted">
            Each node is acted on by the holder of its appliance's lease. Read {formatTime(at)} from <b>{list.self}</b>, again every {POLL_MS / 1000} s.
          </p>
          <table class="appliances" data-testid="appliances">
            <thead>
              <tr>
                <th>appliance</th>
                <th>networks</th>
                <th>standby for</th>
                <th>lease holder</th>
                <th>epoch</th>
                <th>expires in</th>
                <th>nodes</th>
              </tr>
            </thead>
            <tbody>
              {list.appliances.map((a) => (
                <ApplianceRow key={a.name} appliance={a} self={a.name === list.self} />
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}

function ApplianceRow({ appliance: a, self }: { appliance: ApplianceView; self: boolean }) {
  const takenOver = a.lease !== null && a.lease.holder !== a.name;
  const expired = a.lease !== null && a.lease.expiresInMs <= 0;
  return (
    <tr data-appliance={a.name} class={takenOver ? 'taken-over' : ''}>
      <td>
        <b>{a.name}</b>
        {self && <span class="muted"> (this one)</span>}
      </td>
      <td>{a.networks.join(', ')}</td>
      <td>{a.standbyFor ?? '—'}</td>
      {a.lease === null ? (
        <td colSpan={3} class="muted" data-lease="none">
          no lease: one appliance on its own store acts on every node
        </td>
      ) : (
        <>
          <td data-lease="holder" title={takenOver ? `${a.lease.holder} took ${a.name}'s nodes over` : undefined}>
            {a.lease.holder}
            {takenOver && ' (took over)'}
          </td>
          <td>{a.lease.epoch}</td>
          <td class={expired ? 'error' : ''}>{expired ? 'expired' : `${(a.lease.expiresInMs / 1000).toFixed(1)} s`}</td>
        </>
      )}
      <td data-nodes>{a.nodes}</td>
    </tr>
  );
}

// The page: the login form until the API accepts a token, then the dashboard and its views.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { ApiError, api, onUnauthorized, storeToken, storedToken } from './api.js';
import { Cluster } from './cluster.js';
import { useCluster, useRoute } from './hooks.js';
import { countStates, NO_FILTER, type Filter } from './state.js';
import { NODE_STATES } from './types.js';
import { Grid } from './grid.js';
import { NodePage } from './node.js';
import { ImagesPage } from './images.js';
import { ImportPage } from './import.js';
import { DiscoveredPage } from './discovered.js';
import { AppliancesPage } from './appliances.js';
import { NewProfilePage, ProfilePage, ProfilesPage } from './profiles.js';
import { ConfirmAction, type ActionSpec, applianceFreezeAction } from './actions.js';

export function App() {
  const [token, setToken] = useState(storedToken());
  const [refusal, setRefusal] = useState<string | null>(null);
  useEffect(
    () =>
      onUnauthorized((err) => {
        storeToken(null);
        setToken(null);
        setRefusal(err.message);
      }),
    [],
  );
  if (token === null)
    return (
      <Login
        refusal={refusal}
        onLogin={(accepted) => {
          storeToken(accepted);
          setRefusal(null);
          setToken(accepted);
        }}
      />
    );
  return (
    <Dashboard
      key={token}
      onLogout={() => {
        storeToken(null);
        setToken(null);
      }}
    />
  );
}

function Login({ refusal, onLogin }: { refusal: string | null; onLogin: (token: string) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [checking, setChecking] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setChecking(true);
    setError(null);
    try {
      // The smallest authenticated read: it proves the token before the dashboard starts.
      await api('GET', '/openapi.json', undefined, token.trim());
      onLogin(token.trim());
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setChecking(false);
    }
  };
  const shown = error ?? refusal;
  return (
    <main class="login">
      <form onSubmit={submit}>
        <h1>Shoal</h1>
        <label>
          API token
          <input type="password" name="token" autocomplete="current-password" value={token} onInput={(e) => setToken(e.currentTarget.value)} autofocus />
        </label>
        <p class="hint">It is in the appliance's data directory, file <code>api-token</code>. It is kept for this browser tab only.</p>
        {shown && (
          <p class="error" role="alert">
            {shown}
          </p>
        )}
        <button type="submit" disabled={checking || token.trim() === ''}>
          {checking ? 'Checking…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}

function Dashboard({ onLogout }: { onLogout: () => void }) {
  const cluster = useMemo(() => new Cluster(), []);
  const [loadError, setLoadError] = useState<string | null>(null);
  useEffect(() => {
    cluster.start().catch((err: Error) => setLoadError(err.message));
    return () => cluster.close();
  }, [cluster]);
  useCluster(cluster);
  const route = useRoute();
  const [filter, setFilter] = useState<Filter>(NO_FILTER);
  const [action, setAction] = useState<ActionSpec | null>(null);
  const counts = countStates(cluster.nodes.values());
  const view = route[0] ?? '';

  return (
    <div class="dashboard">
      <header>
        <a class="brand" href="#/">
          Shoal
        </a>
        <nav>
          <a href="#/" class={view === '' ? 'active' : ''}>
            Nodes
          </a>
          <a href="#/images" class={view === 'images' ? 'active' : ''}>
            Images
          </a>
          <a href="#/profiles" class={view === 'profiles' || view === 'profile' ? 'active' : ''}>
            Profiles
          </a>
          <a href="#/discovered" class={view === 'discovered' ? 'active' : ''}>
            Discovered
          </a>
          <a href="#/import" class={view === 'import' ? 'active' : ''}>
            Import
          </a>
          <a href="#/appliances" class={view === 'appliances' ? 'active' : ''}>
            Appliances
          </a>
        </nav>
        <div class="counts" data-testid="counts">
          <span class="total">
            <b data-count="total">{cluster.nodes.size}</b> nodes
          </span>
          {NODE_STATES.map((state) => (
            <button
              key={state}
              type="button"
              class={`count state-${state}${filter.state === state ? ' picked' : ''}`}
              title={filter.state === state ? 'show every state' : `show only ${state} nodes`}
              onClick={() => {
                setFilter({ ...filter, state: filter.state === state ? '' : state });
                if (view !== '') location.hash = '#/';
              }}
            >
              <b data-count={state}>{counts[state]}</b> {state}
            </button>
          ))}
        </div>
        <span class={`stream stream-${cluster.stream}`} title={`event stream ${cluster.stream}, revision ${cluster.lastRev}`}>
          {cluster.stream}
        </span>
        {cluster.applianceFrozen && <span class="frozen-banner">appliance frozen</span>}
        <button type="button" onClick={() => setAction(applianceFreezeAction(cluster, true))}>
          Freeze all
        </button>
        <button type="button" onClick={() => setAction(applianceFreezeAction(cluster, false))}>
          Thaw all
        </button>
        <button type="button" class="quiet" onClick={onLogout}>
          Sign out
        </button>
      </header>
      {loadError && (
        <p class="error" role="alert">
          {loadError}
        </p>
      )}
      {view === '' && <Grid cluster={cluster} filter={filter} setFilter={setFilter} onAction={setAction} />}
      {view === 'node' && route[1] && <NodePage key={route[1]} cluster={cluster} id={route[1]} onAction={setAction} />}
      {view === 'images' && <ImagesPage cluster={cluster} onAction={setAction} />}
      {view === 'profiles' && <ProfilesPage cluster={cluster} />}
      {view === 'profile' && (route[1] ? <ProfilePage key={route[1]} cluster={cluster} name={route[1]} onAction={setAction} /> : <NewProfilePage key="new" cluster={cluster} onAction={setAction} />)}
      {view === 'discovered' && <DiscoveredPage cluster={cluster} onAction={setAction} />}
      {view === 'import' && <ImportPage onAction={setAction} />}
      {view === 'appliances' && <AppliancesPage />}
      {action && <ConfirmAction spec={action} onClose={() => setAction(null)} />}
    </div>
  );
}

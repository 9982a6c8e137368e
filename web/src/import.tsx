// Import an inventory file: pasted or picked, sent as YAML, all rows or none.
import { useState } from 'preact/hooks';
import { importAction, type ActionSpec } from './actions.js';

const EXAMPLE = `nodes:
  - name: c001
    macs: [52:54:00:00:10:01]
    bmc: ipmi://admin:secret@10.0.0.101
    labels: { rack: r1 }
    desired: { power: on, image: compute@1 }
`;

export function ImportPage({ onAction }: { onAction: (a: ActionSpec) => void }) {
  const [yaml, setYaml] = useState('');
  const [fileName, setFileName] = useState('(pasted)');
  return (
    <section class="import-view">
      <h1>Import inventory</h1>
      <p>Paste an inventory file or pick one. Every row is checked first: nothing is added unless every row is valid.</p>
      <input
        type="file"
        name="inventory-file"
        accept=".yaml,.yml,application/yaml,text/yaml"
        onChange={async (e) => {
          const file = e.currentTarget.files?.[0];
          if (!file) return;
          setFileName(file.name);
          setYaml(await file.text());
        }}
      />
      <textarea name="inventory" rows={16} placeholder={EXAMPLE} value={yaml} onInput={(e) => setYaml(e.currentTarget.value)} />
      <button type="button" class="primary" disabled={yaml.trim() === ''} onClick={() => onAction(importAction(yaml, fileName))}>
        Import…
      </button>
    </section>
  );
}

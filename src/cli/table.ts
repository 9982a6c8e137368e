// Plain-text tables for the terminal; colour only when stdout is a terminal.
interface Row {
  name: string;
  phase: string;
  reason?: string;
  desired: Record<string, string>;
  observed: Record<string, { value: string; detail?: string }>;
  step?: { name: string; waiting?: string };
}

const COLOURS: Record<string, string> = { converged: '32', converging: '36', failed: '31', blocked: '31', frozen: '34' };

export function phaseColour(phase: string, text: string): string {
  const code = COLOURS[phase];
  return code && process.stdout.isTTY ? `\x1b[${code}m${text}\x1b[0m` : text;
}

export function renderTable(rows: Row[]): string {
  const header = ['NODE', 'PHASE', 'POWER', 'BOOT', 'RUN', 'IMAGE', 'DESIRED', 'STEP / REASON'];
  const body = rows.map((n) => [
    n.name,
    n.phase,
    n.observed.power?.value ?? '-',
    n.observed.boot?.value ?? '-',
    n.observed.run?.value ?? '-',
    n.observed.image?.value ?? '-',
    Object.entries(n.desired)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ') || '-',
    n.reason ?? (n.step ? `${n.step.waiting ? `(${n.step.waiting}) ` : ''}${n.step.name}` : ''),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: string[], phase?: string) =>
    cells.map((c, i) => (i === 1 && phase ? phaseColour(phase, c.padEnd(widths[i]!)) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...body.map((r) => line(r, r[1]))].join('\n');
}

// Which kernel modules an initramfs must carry, read from the kernel's own modules.dep and
// modules.builtin (as depmod wrote them in the image's /lib/modules/<release>): the modules asked
// for and everything they depend on, in an order busybox insmod can load them (dependencies first,
// since insmod resolves nothing), leaving out what the kernel has built in.

/** `modules.dep` as a map from module name (dashes as underscores) to its path and its dependencies' paths. */
function parseModulesDep(text: string): Map<string, { path: string; deps: string[] }> {
  const modules = new Map<string, { path: string; deps: string[] }>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const path = line.slice(0, colon).trim();
    const deps = line.slice(colon + 1).trim().split(/\s+/).filter(Boolean);
    modules.set(moduleName(path), { path, deps });
  }
  return modules;
}

/** "kernel/fs/overlayfs/overlay.ko" → "overlay"; the kernel treats - and _ in names alike. */
export function moduleName(path: string): string {
  return (path.split('/').at(-1) ?? path).replace(/\.ko(\.(xz|gz|zst))?$/, '').replaceAll('-', '_');
}

/**
 * The paths (relative to /lib/modules/<release>) of `wanted` and their dependencies, each once,
 * every dependency before the module needing it, in the order `wanted` names them otherwise.
 * A built-in module is skipped; one that is neither built in nor a module is an error naming it.
 */
export function modulesToLoad(wanted: readonly string[], modulesDep: string, modulesBuiltin: string, release: string): string[] {
  const available = parseModulesDep(modulesDep);
  const builtin = new Set(modulesBuiltin.split('\n').filter(Boolean).map(moduleName));
  const byPath = new Map([...available.values()].map((m) => [m.path, m]));
  const ordered: string[] = [];
  const visit = (path: string) => {
    if (ordered.includes(path)) return;
    for (const dep of byPath.get(path)?.deps ?? []) visit(dep);
    ordered.push(path);
  };
  for (const name of wanted.map((n) => n.replaceAll('-', '_'))) {
    const module = available.get(name);
    if (module) visit(module.path);
    else if (!builtin.has(name)) throw new Error(`kernel ${release} has no module ${name} (neither in modules.dep nor built in)`);
  }
  const compressed = ordered.filter((p) => !p.endsWith('.ko'));
  // busybox insmod reads plain .ko files only.
  if (compressed.length > 0) throw new Error(`kernel ${release} ships compressed modules, which busybox insmod cannot load: ${compressed.join(', ')}`);
  return ordered;
}

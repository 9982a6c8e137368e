// Checks a rendered /etc/shoal/config.yaml with the release that will run it, before it replaces
// the installed one (the role's template task runs it as its `validate` command):
//   node check-config.mjs RELEASE_DIR CONFIG_FILE
// The appliance's own loader checks the file (strict schema), then every module listed is made
// from its options by the module's own createModule, which refuses options its schema does not
// know. The pxe module checks its DHCP settings (subnets, pool, interface address) only when its
// server starts, so they are checked here with the DHCP server's own parser too. Nothing is
// started and nothing is bound. Exits non-zero with the reasons on stderr.
const [release, file] = process.argv.slice(2);
if (!release || !file) {
  console.error('usage: check-config.mjs RELEASE_DIR CONFIG_FILE');
  process.exit(2);
}
try {
  const { loadConfig } = await import(`${release}/dist/src/config.js`);
  const config = loadConfig(file);
  for (const entry of config.modules) {
    let factory;
    try {
      factory = await import(`${release}/dist/modules/${entry.name}/index.js`);
    } catch (err) {
      throw new Error(`module "${entry.name}" is not in this release: ${err.message}`);
    }
    try {
      factory.createModule(entry.options);
    } catch (err) {
      // A zod error lists its issues; one line each reads better than its JSON.
      const reasons = Array.isArray(err.issues) ? err.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ') : err.message;
      throw new Error(`module "${entry.name}" rejects its options: ${reasons}`);
    }
    if (entry.name === 'pxe' && entry.options.dhcp) {
      const { parseDhcpServerConfig } = await import(`${release}/dist/modules/pxe/dhcp/config.js`);
      parseDhcpServerConfig(entry.options.dhcp);
    }
  }
  console.log(`config ${file}: accepted by ${release} (modules: ${config.modules.map((m) => m.name).join(', ') || 'none'})`);
} catch (err) {
  console.error(err.message);
  process.exit(1);
}

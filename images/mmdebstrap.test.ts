// mmdebstrap's failures as an operator reads them, from apt's own error lines (the real build,
// with a package the mirror lacks, is in os-build.test.ts), and the cache paths its hooks can take.
import { describe, expect, it } from 'vitest';
import { describeFailure, ensureRootTree, RootTreeError } from './mmdebstrap.js';
import { parseOsRecipe } from './os-recipe.js';

const recipe = parseOsRecipe('name: t\nversion: "1"\ndescription: d\nsuite: bookworm\npackages: [linux-image-amd64]\ncmdline: ""\n', '/nonexistent/t.yaml');

describe('mmdebstrap failures', () => {
  it('names the package whose download failed and what the mirror answered', () => {
    const message = describeFailure(
      recipe,
      ['E: Failed to fetch http://deb.debian.org/debian/pool/main/o/openssh/openssh-server_1%3a9.2p1-2+deb12u3_amd64.deb  404  Not Found [IP: 151.101.2.132 80]', 'E: Unable to fetch some archives'],
      'exit status 25',
    );
    expect(message).toBe(
      'mmdebstrap could not build t@1 from http://deb.debian.org/debian bookworm (exit status 25): package openssh-server could not be downloaded: http://deb.debian.org/debian/pool/main/o/openssh/openssh-server_1%3a9.2p1-2+deb12u3_amd64.deb answered 404  Not Found [IP: 151.101.2.132 80]',
    );
  });

  it('names a package the suite does not have, and falls back to the last error lines otherwise', () => {
    expect(describeFailure(recipe, ['E: Unable to locate package nosuch'], 'exit status 25')).toMatch(/: package nosuch is not in bookworm \(main\) at http:\/\/deb\.debian\.org\/debian$/);
    expect(describeFailure(recipe, ['E: something else broke'], 'killed by SIGTERM')).toMatch(/\(killed by SIGTERM\): E: something else broke$/);
  });

  it('refuses a cache directory mmdebstrap\'s hooks cannot name (they split on whitespace)', async () => {
    await expect(ensureRootTree(recipe, '/tmp/a cache', 0, () => {})).rejects.toThrow(new RootTreeError('the image cache directory "/tmp/a cache" has whitespace in it, which mmdebstrap\'s hooks cannot take'));
  });
});

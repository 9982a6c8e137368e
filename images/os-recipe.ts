// Recipes for real operating-system images, built from Debian packages by mmdebstrap
// (images/recipes/*.yaml): a suite, a mirror, the packages (a kernel package among them), files
// to add and a post-install script. This file is the edge: a recipe is parsed and validated here,
// its files read, and its cache key computed from everything that decides the root tree, so a
// changed recipe or added file is never served from a stale tree.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, isAbsolute, join, posix, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

export const DEFAULT_MIRROR = 'http://deb.debian.org/debian';
/** Where the recipes shipped with Shoal live. */
export const RECIPES_DIR = new URL('./recipes/', import.meta.url).pathname;

// Debian policy's package name grammar; an optional =version pins one.
const PACKAGE = /^[a-z0-9][a-z0-9+.-]+(=[0-9A-Za-z.+~:-]+)?$/;
// A path in the image: absolute, normalized, no "." or ".." parts, nothing apt or the builder owns.
const imagePath = z
  .string()
  .regex(/^\/[A-Za-z0-9._@+-]+(\/[A-Za-z0-9._@+-]+)*$/, 'an absolute path of letters, digits and ._@+- (no spaces)')
  .refine((p) => posix.normalize(p) === p && !p.split('/').some((part) => part === '.' || part === '..'), 'a normalized path with no . or .. parts');

const fileToAdd = z
  .object({
    path: imagePath,
    mode: z
      .string()
      .regex(/^0?[0-7]{3,4}$/, 'an octal mode such as "0644"')
      .default('0644'),
    /** A file beside the recipe (relative to its directory), or the content itself. */
    source: z.string().min(1).refine((s) => !isAbsolute(s), 'relative to the recipe file').optional(),
    content: z.string().optional(),
  })
  .strict()
  .refine((f) => (f.source === undefined) !== (f.content === undefined), 'exactly one of source and content');

export const OsRecipeSchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes, starting with a letter'),
    version: z.string().regex(/^[0-9a-z][0-9a-z.-]{0,31}$/, 'lowercase letters, digits, dots and dashes'),
    description: z.string().min(1),
    suite: z.string().regex(/^[a-z][a-z0-9-]*$/, 'a Debian suite or codename, e.g. bookworm'),
    mirror: z
      .url({ protocol: /^https?$/ })
      .default(DEFAULT_MIRROR),
    components: z.array(z.string().regex(/^[a-z][a-z0-9-]*$/)).min(1).default(['main']),
    /** mmdebstrap's package set the listed packages are added to. */
    variant: z.enum(['essential', 'apt', 'minbase', 'required', 'important', 'standard']).default('minbase'),
    packages: z
      .array(z.string().regex(PACKAGE, 'a Debian package name, optionally =version'))
      .min(1)
      .refine((ps) => ps.some((p) => p.startsWith('linux-image-')), 'must include a kernel package (linux-image-…, e.g. linux-image-amd64)')
      .refine((ps) => new Set(ps).size === ps.length, 'lists a package twice'),
    files: z.array(fileToAdd).default([]),
    /** Run with /bin/sh inside the finished root (chroot), after the packages and files. */
    postInstall: z.string().default(''),
    /** Base kernel arguments; the appliance appends shoal.url, shoal.node, shoal.token, shoal.image. */
    cmdline: z.string().max(1024),
  })
  .strict()
  .refine((r) => new Set(r.files.map((f) => f.path)).size === r.files.length, { message: 'adds the same path twice', path: ['files'] });

export type OsRecipeInput = z.input<typeof OsRecipeSchema>;

export interface OsRecipe extends Omit<z.infer<typeof OsRecipeSchema>, 'files'> {
  /** Where the recipe was read from. */
  source: string;
  files: { path: string; mode: number; data: Buffer }[];
  /** SHA-256 over everything that decides the root tree (`recipeKey`). */
  key: string;
}

export class RecipeError extends Error {}

/** Validates a recipe's YAML text; `dir` is where its `source:` files are. Errors name the file and field. */
export function parseOsRecipe(text: string, source: string, dir = dirname(source)): OsRecipe {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new RecipeError(`${source}: not YAML: ${(error as Error).message}`);
  }
  const result = OsRecipeSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`);
    throw new RecipeError(`${source}: not an image recipe: ${problems.join('; ')}`);
  }
  const files = result.data.files.map((f, index) => {
    let data: Buffer;
    if (f.content !== undefined) data = Buffer.from(f.content);
    else {
      const path = resolve(dir, f.source!);
      try {
        data = readFileSync(path);
      } catch (error) {
        throw new RecipeError(`${source}: files.${index}.source: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
    }
    return { path: f.path, mode: parseInt(f.mode, 8), data };
  });
  const recipe = { ...result.data, source, files };
  return { ...recipe, key: recipeKey(recipe) };
}

/**
 * The tree's cache key: the recipe's fields in a fixed order and each added file's path, mode and
 * bytes. Name and version are in it because the builder writes them into /etc/shoal-image.
 */
function recipeKey(r: Omit<OsRecipe, 'key'>): string {
  const hash = createHash('sha256');
  const fields = { name: r.name, version: r.version, suite: r.suite, mirror: r.mirror, components: r.components, variant: r.variant, packages: r.packages, postInstall: r.postInstall };
  hash.update(JSON.stringify(fields));
  for (const f of r.files) hash.update(`\0${f.path}\0${f.mode}\0${f.data.length}\0`).update(f.data);
  return hash.digest('hex');
}

export function loadOsRecipe(path: string): OsRecipe {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new RecipeError(`cannot read recipe ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return parseOsRecipe(text, path);
}

/** The recipes shipped in images/recipes/, by `name@version`. */
export function shippedOsRecipes(): OsRecipe[] {
  return readdirSync(RECIPES_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => loadOsRecipe(join(RECIPES_DIR, f)));
}

// Images, as the image store module lists them, with the nodes that want and run each; upload and
// remove. Until that module is loaded the API answers 404.
import { Fragment } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { ApiError, api } from './api.js';
import { describeError, removeImageAction, uploadImageAction, type ActionSpec } from './actions.js';
import type { Cluster } from './cluster.js';
import { formatBytes, formatTime, shortDigest } from './format.js';
import { nodeHref, useCluster } from './hooks.js';
import { NotATar, readImageArchive, refOfManifest, type ImageArchive } from './tar.js';
import type { ImageView, NodeView } from '../../src/api/views.js';

/** What desired state accepts and the upload's `?ref=` asks for (modules/images/manifest.ts IMAGE_REF). */
const IMAGE_REF = /^[a-z][a-z0-9-]{0,62}@[0-9a-z][0-9a-z.-]{0,31}$/;

interface Users {
  /** Nodes whose desired image is this one. */
  wanting: NodeView[];
  /** Nodes that report running it. */
  running: NodeView[];
}

/** Per image ref, from the live node list: one pass however many images there are. */
function usersByRef(cluster: Cluster): Map<string, Users> {
  const users = new Map<string, Users>();
  const of = (ref: string) => users.get(ref) ?? users.set(ref, { wanting: [], running: [] }).get(ref)!;
  for (const id of cluster.order) {
    const node = cluster.nodes.get(id);
    if (!node) continue;
    if (node.desired.image) of(node.desired.image).wanting.push(node);
    if (node.observed.image?.value) of(node.observed.image.value).running.push(node);
  }
  return users;
}

export function ImagesPage({ cluster, onAction }: { cluster: Cluster; onAction: (a: ActionSpec) => void }) {
  const version = useCluster(cluster);
  const [images, setImages] = useState<ImageView[] | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  /** The image just uploaded, marked in the list. */
  const [fresh, setFresh] = useState<string | null>(null);
  /** Bumped after an upload, so the form starts again empty. */
  const [uploads, setUploads] = useState(0);
  const reload = () =>
    api<{ images: ImageView[] }>('GET', '/images')
      .then((body) => {
        setImages(body.images);
        setMessage(null);
      })
      .catch((err) => setMessage(err instanceof ApiError && err.status === 404 ? 'No image store module loaded.' : describeError(err)));
  useEffect(() => void reload(), []);
  const users = useMemo(() => usersByRef(cluster), [version]);
  const none: Users = { wanting: [], running: [] };

  return (
    <section class="images-view">
      <h1>Images</h1>
      {message && <p data-testid="images-message">{message}</p>}
      {images && (
        <UploadForm
          key={uploads}
          onAction={onAction}
          onUploaded={(ref) => {
            if (ref) {
              setFresh(ref);
              setUploads(uploads + 1);
            }
            void reload();
          }}
        />
      )}
      {images && images.length === 0 && <p>The image store holds no image.</p>}
      {images && images.length > 0 && (
        <table class="images" data-testid="images">
          <thead>
            <tr>
              <th>image</th>
              <th>digest</th>
              <th>size</th>
              <th>imported</th>
              <th>wanted by</th>
              <th>running on</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {images.map((image) => {
              const { wanting, running } = users.get(image.ref) ?? none;
              return (
                <tr key={image.ref} data-ref={image.ref} class={image.ref === fresh ? 'fresh' : ''}>
                  <td>
                    <b>{image.ref}</b> <span class="muted">{image.arch}</span>
                  </td>
                  <td>
                    <code class="digest" title={image.digest}>
                      {shortDigest(image.digest)}
                    </code>
                  </td>
                  <td class="size" data-bytes={image.size} title={`${image.size.toLocaleString()} bytes`}>
                    {formatBytes(image.size)}
                  </td>
                  <td>{formatTime(image.importedAt)}</td>
                  <td class="wanting" data-count={wanting.length}>
                    <NodeNames nodes={wanting} />
                  </td>
                  <td class="running" data-count={running.length}>
                    <NodeNames nodes={running} />
                  </td>
                  <td>
                    <button type="button" onClick={() => onAction(removeImageAction(image, wanting.map((n) => n.name), running.map((n) => n.name), () => void reload()))}>
                      Remove…
                    </button>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}

function NodeNames({ nodes }: { nodes: NodeView[] }) {
  if (nodes.length === 0) return <span class="muted">no node</span>;
  return (
    <span>
      {nodes.length} node{nodes.length === 1 ? '' : 's'}:{' '}
      {nodes.slice(0, 5).map((n, i) => (
        <Fragment key={n.id}>
          {i > 0 && ', '}
          <a href={nodeHref(n.id)}>{n.name}</a>
        </Fragment>
      ))}
      {nodes.length > 5 && <span class="muted">, … {nodes.length - 5} more</span>}
    </span>
  );
}

/** Pick a tar, see what image.json says it is, upload it under that ref (or one typed). */
function UploadForm({ onAction, onUploaded }: { onAction: (a: ActionSpec) => void; onUploaded: (ref: string | null) => void }) {
  const [file, setFile] = useState<File | null>(null);
  const [archive, setArchive] = useState<ImageArchive | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [ref, setRef] = useState('');
  const pick = async (picked: File | undefined) => {
    setFile(picked ?? null);
    setArchive(null);
    setProblem(null);
    setRef('');
    if (!picked) return;
    try {
      const read = await readImageArchive(picked);
      setArchive(read);
      setRef(refOfManifest(read.manifest) ?? '');
      if (read.manifestError) setProblem(read.manifestError);
    } catch (err) {
      setProblem(err instanceof NotATar ? err.message : `the file cannot be read: ${(err as Error).message}`);
    }
  };
  const refOk = IMAGE_REF.test(ref);
  return (
    <form
      class="upload-form"
      onSubmit={(e) => {
        e.preventDefault();
        if (file && refOk) onAction(uploadImageAction(file, ref, archive, onUploaded));
      }}
    >
      <h2>Upload an image</h2>
      <p class="muted">
        A tar of <code>image.json</code> and the files it names, at the top of the archive (<code>tar -C DIR -cf image.tar .</code>).
      </p>
      <div class="upload-row">
        <input type="file" name="image-file" accept=".tar,application/x-tar" onChange={(e) => void pick(e.currentTarget.files?.[0])} />
        <label>
          as
          <input name="image-ref" placeholder="name@version" value={ref} onInput={(e) => setRef(e.currentTarget.value.trim())} />
        </label>
        <button type="submit" class="primary" disabled={!file || !refOk}>
          Upload…
        </button>
      </div>
      {file && archive && !problem && (
        <p data-testid="archive-summary">
          {file.name}: {formatBytes(file.size)}, {archive.entries.map((e) => e.name).join(', ')}
        </p>
      )}
      {problem && (
        <p class="warning" data-testid="archive-problem">
          {problem}. The appliance will say what it makes of it; {refOk ? 'you can still upload it.' : 'type the image name@version to upload it anyway.'}
        </p>
      )}
      {file && ref && !refOk && <p class="error">"{ref}" is not name@version (lowercase, e.g. compute@3).</p>}
    </form>
  );
}

// Images, as the image store module lists them. Until that module is loaded the API answers 404.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, api } from './api.js';
import { describeError } from './actions.js';

/** The fields of `GET /api/v1/images` this view shows (modules/images/module.ts has the rest). */
interface ImageView {
  ref: string;
  digest: string;
  size: number;
  importedAt?: number | string;
  /** Nodes whose desired state asks for this image. */
  nodes: string[];
}

export function ImagesPage() {
  const [images, setImages] = useState<ImageView[] | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  useEffect(() => {
    api<{ images: ImageView[] }>('GET', '/images')
      .then((body) => setImages(body.images))
      .catch((err) => setMessage(err instanceof ApiError && err.status === 404 ? 'No image store module loaded.' : describeError(err)));
  }, []);
  return (
    <section class="images-view">
      <h1>Images</h1>
      {message && <p data-testid="images-message">{message}</p>}
      {images && images.length === 0 && <p>The image store holds no image.</p>}
      {images && images.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>image</th>
              <th>digest</th>
              <th>size</th>
              <th>imported</th>
              <th>wanted by</th>
            </tr>
          </thead>
          <tbody>
            {images.map((image) => (
              <tr key={image.ref}>
                <td>{image.ref}</td>
                <td>
                  <code title={image.digest}>{image.digest.slice(0, 19)}…</code>
                </td>
                <td>{(image.size / 2 ** 20).toFixed(1)} MiB</td>
                <td>{image.importedAt !== undefined ? new Date(image.importedAt).toLocaleString() : ''}</td>
                <td>
                  {image.nodes.length} node{image.nodes.length === 1 ? '' : 's'}
                  {image.nodes.length > 0 && <span class="muted"> ({image.nodes.slice(0, 5).join(', ')}{image.nodes.length > 5 ? ', …' : ''})</span>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

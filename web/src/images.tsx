// Images, as the image store module lists them. Until that module is loaded the API answers 404.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, api } from './api.js';
import { describeError } from './actions.js';

type ImageRow = Record<string, unknown>;

export function ImagesPage() {
  const [images, setImages] = useState<ImageRow[] | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  useEffect(() => {
    api<ImageRow[] | { images: ImageRow[] }>('GET', '/images')
      .then((body) => setImages(Array.isArray(body) ? body : body.images))
      .catch((err) => setMessage(err instanceof ApiError && err.status === 404 ? 'No image store module loaded.' : describeError(err)));
  }, []);
  const columns = [...new Set((images ?? []).flatMap((row) => Object.keys(row)))];
  return (
    <section class="images-view">
      <h1>Images</h1>
      {message && <p data-testid="images-message">{message}</p>}
      {images && images.length === 0 && <p>The image store holds no image.</p>}
      {images && images.length > 0 && (
        <table>
          <thead>
            <tr>
              {columns.map((c) => (
                <th key={c}>{c}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {images.map((row, i) => (
              <tr key={i}>
                {columns.map((c) => (
                  <td key={c}>{typeof row[c] === 'object' ? JSON.stringify(row[c]) : String(row[c] ?? '')}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

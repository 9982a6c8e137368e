// The image store's refusals as tests check them: the error a promise rejects with, which must be an ImageStoreError.
import { expect } from 'vitest';
import { ImageStoreError } from '../../modules/images/store.js';

export async function storeRefusal(promise: Promise<unknown>): Promise<ImageStoreError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ImageStoreError);
  return err as ImageStoreError;
}

import type { StorageSettings } from '../config/index.js';
import { FsStorage } from './fs.js';
import { S3Storage } from './s3.js';
import type { Storage } from './storage.js';

export type {
  Storage,
  ObjectInfo,
  ObjectWriter,
  IncompleteUpload,
  RequestCounts,
  OpenReadOptions,
  ResumeInfo,
} from './storage.js';
export { FsStorage } from './fs.js';
export { S3Storage } from './s3.js';

export function createStorage(settings: StorageSettings): Storage {
  if (settings.kind === 'file') return new FsStorage(settings.root);
  return new S3Storage(settings);
}

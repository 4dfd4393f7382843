// Output paths (`mpc compile -o`, `mpc train --save/--checkpoint`, `mpc run --output`,
// `mpc grad -o`) are checked before any work, so that a path that cannot be written fails at
// once with its real cause (ENOTDIR, EROFS, EACCES, ENOSPC, a pseudo file system) instead of
// after a whole compile or training run. The same check removes what an interrupted earlier
// write left beside the path: `.NAME.tmp-PID` files and folders of a process that is gone.
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statfsSync, statSync, unlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { InputError } from './errors.js';

/** Why a file-system call failed, in words, with the error code. */
export function fsReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  const words: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EROFS: 'read-only file system',
    ENOTDIR: 'a part of the path is a file, not a folder',
    EISDIR: 'it is a folder',
    ENOSPC: 'no space left on the device',
    EDQUOT: 'disk quota exceeded',
    ENOENT: 'no such folder',
  };
  return code ? `${words[code] ? `${words[code]}, ` : ''}${code}` : (e as Error).message;
}

/** File systems that hold no user files (writes fail, or never end, or are not files). */
const PSEUDO = new Set([
  'proc', 'sysfs', 'devtmpfs', 'devpts', 'debugfs', 'tracefs', 'cgroup', 'cgroup2', 'securityfs', 'bpf', 'pstore',
  'configfs', 'fusectl', 'mqueue', 'hugetlbfs', 'binfmt_misc', 'efivarfs', 'selinuxfs', 'autofs', 'nsfs', 'rpc_pipefs',
]);
/** statfs magic numbers of the commonest ones, when the mount table cannot be read. */
const PSEUDO_MAGIC: Record<number, string> = { 0x9fa0: 'proc', 0x62656572: 'sysfs', 0x1cd1: 'devpts', 0x64626720: 'debugfs', 0x74726163: 'tracefs', 0x27e0eb: 'cgroup', 0x63677270: 'cgroup2' };

/** The type of the file system that holds the existing folder `dir` (Linux), if known. */
function fsType(dir: string): string | undefined {
  try {
    let best = '';
    let type: string | undefined;
    for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
      const [, at, t] = line.split(' ');
      if (!at || !t) continue;
      const mount = at.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
      if ((dir === mount || dir.startsWith(mount === '/' ? '/' : `${mount}/`)) && mount.length >= best.length) {
        best = mount;
        type = t;
      }
    }
    if (type) return type;
  } catch {
    /* no mount table: fall back on statfs */
  }
  try {
    return PSEUDO_MAGIC[Number(statfsSync(dir).type)];
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes `.NAME.tmp-PID[...]` beside `path` whose process is gone (an interrupted atomic
 * write). A `.NAME.old-PID` folder (an earlier compile output moved aside) goes back in
 * place when `path` is missing, else it is removed. Returns the names removed.
 */
export function removeStaleTemps(path: string): string[] {
  const dir = dirname(path);
  const base = basename(path);
  const removed: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return removed;
  }
  const prefix = `.${base}.`;
  for (const e of entries) {
    if (!e.startsWith(prefix)) continue;
    const m = /^(tmp|old)-(\d+)(\.[a-z]+)?$/.exec(e.slice(prefix.length));
    if (!m || alive(Number(m[2]))) continue;
    try {
      if (m[1] === 'old' && !existsSync(path)) renameSync(join(dir, e), path);
      else rmSync(join(dir, e), { recursive: true, force: true });
      removed.push(e);
    } catch {
      /* left for a later run: this one fails on its own if the folder is unusable */
    }
  }
  return removed;
}

/** The nearest existing ancestor of `p` (p itself when it exists). */
function existingAncestor(p: string): string {
  let cur = p;
  for (;;) {
    try {
      lstatSync(cur);
      return cur;
    } catch {
      const up = dirname(cur);
      if (up === cur) return cur;
      cur = up;
    }
  }
}

/**
 * Checks, before any work, that `path` can be written: a file (the folder must exist) or an
 * output folder (missing folders above it are created on writing). Throws an InputError that
 * names `option` and the real cause; removes stale temporary files beside the path.
 */
export function checkOutputPath(path: string, option: string, kind: 'file' | 'folder'): void {
  const abs = resolve(path);
  const fail = (why: string): never => {
    throw new InputError(`${option} ${path}: ${why}`);
  };
  const parent = dirname(abs);
  const at = existingAncestor(parent);
  let st;
  try {
    st = statSync(at);
  } catch (e) {
    return fail(`cannot use ${at} (${fsReason(e)})`);
  }
  if (!st.isDirectory()) fail(`${at} is a file, not a folder (ENOTDIR)`);
  const type = fsType(at);
  if (type && PSEUDO.has(type)) fail(`${at} is on the ${type} pseudo file system, which cannot hold output files`);
  if (kind === 'file') {
    if (at !== parent) fail(`the folder ${parent} does not exist (ENOENT)`);
    let target;
    try {
      target = statSync(abs);
    } catch {
      /* a new file */
    }
    if (target?.isDirectory()) fail('is a folder (EISDIR); give a file name');
  }
  if (at === parent) removeStaleTemps(abs);
  // Create (and remove) a file where the output will go: the one test that tells EROFS,
  // EACCES, ENOSPC and quota apart from success for every user, root included.
  const probe = join(at, `.${basename(abs)}.tmp-${process.pid}`);
  try {
    closeSync(openSync(probe, 'wx'));
    unlinkSync(probe);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') fail(`cannot write in ${at} (${fsReason(e)})`);
  }
  try {
    const fs = statfsSync(at);
    if (Number(fs.bavail) === 0 && Number(fs.blocks) > 0) fail(`no space left on the device that holds ${at} (ENOSPC)`);
  } catch (e) {
    if (e instanceof InputError) throw e;
  }
}

/**
 * mkdir -p without the retry loop of a recursive mkdirSync, which spins forever where mkdir
 * answers ENOENT below an existing folder (proc): each missing folder is made once, and the
 * first failure is thrown.
 */
export function makeFolders(dir: string): void {
  const abs = resolve(dir);
  const at = existingAncestor(abs);
  const missing: string[] = [];
  for (let cur = abs; cur !== at; cur = dirname(cur)) missing.unshift(cur);
  for (const d of missing) mkdirSync(d);
}

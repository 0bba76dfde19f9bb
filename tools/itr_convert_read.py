#!/usr/bin/env python3
"""Checkpoint reader of itr-convert (docs/user-guide.md, "Bringing original
checkpoints").

    itr_convert_read.py [--reader auto|torch|pickle] CHECKPOINT OUT.safetensors

Reads an original repository's checkpoint (`torch.save` output: the zip
format of PyTorch >= 1.6 or the legacy pickle stream before it, Python 2 or 3)
and writes every tensor of its weights to OUT as safetensors, named by its
path in the checkpoint: `checkpoint['model'][1]['rnn.weight_ih_l0']` becomes
`1.rnn.weight_ih_l0`. The C side (runtime/ckpt_convert.h) applies the model's
name map to those names.

A checkpoint's pickle is never executed:
  - torch: torch.load(weights_only=True), PyTorch's own restricted unpickler,
    with a few harmless extra globals allowed (argparse.Namespace and numpy
    scalars, which the originals store next to the weights);
  - pickle: the standard library only (no torch, no numpy): an Unpickler whose
    find_class hands out only the torch rebuild functions and storage types,
    OrderedDict and inert stand-ins for Namespace and numpy scalars; any other
    global is refused before anything is called.
`auto` uses torch when it imports, else pickle. Errors go to stderr as
"itr-convert: CHECKPOINT: what is wrong" with exit status 1.
"""

import argparse
import array
import collections
import io
import json
import os
import pickle
import struct
import sys
import tempfile
import zipfile


class ReadError(Exception):
    pass


# torch storage class -> (safetensors dtype as stored, bytes per element)
STORAGES = {
    'FloatStorage': ('F32', 4), 'DoubleStorage': ('F64', 8), 'HalfStorage': ('F16', 2),
    'BFloat16Storage': ('BF16', 2), 'LongStorage': ('I64', 8), 'IntStorage': ('I32', 4),
    'ShortStorage': ('I16', 2), 'CharStorage': ('I8', 1), 'ByteStorage': ('U8', 1), 'BoolStorage': ('BOOL', 1),
}
# torch.<dtype> attributes (rebuild_tensor_v3 passes the dtype itself)
TORCH_DTYPES = {
    'float32': ('F32', 4), 'float': ('F32', 4), 'float64': ('F64', 8), 'double': ('F64', 8),
    'float16': ('F16', 2), 'half': ('F16', 2), 'bfloat16': ('BF16', 2), 'int64': ('I64', 8), 'long': ('I64', 8),
    'int32': ('I32', 4), 'int': ('I32', 4), 'int16': ('I16', 2), 'int8': ('I8', 1), 'uint8': ('U8', 1),
    'bool': ('BOOL', 1),
}
LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


# ---------------------------------------------------------------- the stdlib reader

class Storage:
    def __init__(self, dtype, itemsize, fetch):
        self.dtype, self.itemsize, self._fetch, self._data = dtype, itemsize, fetch, None

    def data(self):
        if self._data is None:
            self._data = self._fetch()
        return self._data


class StorageView:
    """A legacy storage view: elements [offset, offset + size) of a root storage."""
    def __init__(self, root, offset, size):
        self.root, self.offset, self.size = root, offset, size
        self.dtype, self.itemsize = root.dtype, root.itemsize

    def data(self):
        b = self.root.data()
        return b[self.offset * self.itemsize:(self.offset + self.size) * self.itemsize]


class Tensor:
    """What _rebuild_tensor* returns here: a strided view of a storage."""
    def __init__(self, storage, offset, size, stride, dtype=None):
        if not isinstance(storage, (Storage, StorageView)):
            raise ReadError('a tensor is rebuilt from something that is not a storage')
        self.storage, self.offset = storage, int(offset)
        self.shape, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
        if dtype is not None and dtype[0] != storage.dtype:
            # v3 with an untyped storage: reinterpret the bytes
            storage = Storage(dtype[0], dtype[1], storage.data)
            self.storage = storage
        if len(self.shape) != len(self.stride) or any(s < 0 for s in self.shape + self.stride) or self.offset < 0:
            raise ReadError('a tensor has a malformed size/stride')

    @property
    def dtype(self):
        return self.storage.dtype

    def contiguous_bytes(self):
        isz, data = self.storage.itemsize, self.storage.data()
        n = 1
        for s in self.shape:
            n *= s
        if n == 0:
            return b''
        # the largest element offset must lie inside the storage
        last = self.offset + sum((s - 1) * st for s, st in zip(self.shape, self.stride))
        if self.offset < 0 or (last + 1) * isz > len(data):
            raise ReadError('a tensor reaches past the end of its storage (%d of %d bytes)'
                            % ((last + 1) * isz, len(data)))
        want, acc = [], 1
        for s in reversed(self.shape):
            want.append(acc)
            acc *= s
        want.reverse()
        if all(st == w or s == 1 for s, st, w in zip(self.shape, self.stride, want)):
            return bytes(data[self.offset * isz:(self.offset + n) * isz])
        # Non-contiguous (a transposed or sliced view was saved): gather
        # element by element in row-major order.
        out = bytearray(n * isz)
        idx = [0] * len(self.shape)
        for k in range(n):
            off = self.offset + sum(i * st for i, st in zip(idx, self.stride))
            out[k * isz:(k + 1) * isz] = data[off * isz:(off + 1) * isz]
            for ax in range(len(idx) - 1, -1, -1):
                idx[ax] += 1
                if idx[ax] < self.shape[ax]:
                    break
                idx[ax] = 0
        return bytes(out)


class Opaque:
    """An inert stand-in for argparse.Namespace and numpy scalars/arrays: it
    takes any arguments and state and does nothing with them."""
    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _rebuild_tensor(storage, offset, size, stride, *rest):
    return Tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *rest):
    if not isinstance(dtype, tuple):
        raise ReadError('rebuild_tensor_v3 without a dtype')
    return Tensor(storage, offset, size, stride, dtype=dtype)


def _rebuild_parameter(data, *rest):
    return data


def _codecs_encode(text, encoding='utf-8'):
    # numpy scalars are pickled as latin-1 text; nothing else is decoded
    if encoding not in ('latin1', 'latin-1'):
        raise ReadError("_codecs.encode with encoding %r is not allowed" % (encoding,))
    return text.encode('latin1')


NUMPY_OPAQUE = {'scalar', '_reconstruct', 'ndarray', 'dtype'}


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f, encoding='latin1')
        self.storages = storages   # persistent id -> Storage

    def find_class(self, module, name):
        if module == 'collections' and name == 'OrderedDict':
            return collections.OrderedDict
        if module == 'torch._utils':
            if name in ('_rebuild_tensor', '_rebuild_tensor_v2'):
                return _rebuild_tensor
            if name == '_rebuild_tensor_v3':
                return _rebuild_tensor_v3
            if name == '_rebuild_parameter':
                return _rebuild_parameter
        if module in ('torch', 'torch.cuda') and name in STORAGES:
            return ('storage-type', name)
        if module == 'torch' and name in TORCH_DTYPES:
            return TORCH_DTYPES[name]
        if module == 'torch' and name == 'Size':
            return tuple
        if module == 'argparse' and name == 'Namespace':
            return type('Namespace', (Opaque,), {})
        if (module.startswith('numpy') and name in NUMPY_OPAQUE) or module == 'numpy.dtypes':
            return type(name, (Opaque,), {})
        if module == '_codecs' and name == 'encode':
            return _codecs_encode
        raise ReadError("the pickle refers to the global '%s.%s', which a checkpoint of weights does not need; "
                        "refusing to load it (only tensors, storages, OrderedDict and plain data are read)"
                        % (module, name))

    def persistent_load(self, pid):
        return self.storages(pid)


def _storage_type(t):
    if not (isinstance(t, tuple) and len(t) == 2 and t[0] == 'storage-type'):
        if isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], str):
            return t   # a dtype (untyped storage in newer files)
        raise ReadError('a storage record names no storage type')
    return STORAGES[t[1]]


def read_zip(path):
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ReadError('a damaged zip archive (%s)' % e)
    names = zf.namelist()
    pkl = [n for n in names if n == 'data.pkl' or n.endswith('/data.pkl')]
    if not pkl:
        raise ReadError('a zip archive without data.pkl: not a PyTorch checkpoint')
    prefix = pkl[0][:-len('data.pkl')]
    if prefix + 'byteorder' in names and zf.read(prefix + 'byteorder').strip() not in (b'little', b''):
        raise ReadError('a big-endian checkpoint; only little-endian ones are read')
    cache = {}

    def storages(pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage'):
            raise ReadError('an unknown persistent id in data.pkl')
        _, stype, key, _location, numel = pid[:5]
        dtype, isz = _storage_type(stype)
        key = str(key)
        if key not in cache:
            rec = prefix + 'data/' + key

            def fetch(rec=rec, want=int(numel) * isz):
                try:
                    b = zf.read(rec)
                except KeyError:
                    raise ReadError("the storage record '%s' is missing" % rec)
                if len(b) < want:
                    raise ReadError("the storage record '%s' has %d bytes, %d expected" % (rec, len(b), want))
                return b
            cache[key] = Storage(dtype, isz, fetch)
        return cache[key]

    return RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), storages).load()


def read_legacy(path):
    with open(path, 'rb') as f:
        head = f.read(2)
        if head == b'PK':
            raise ReadError('a damaged or truncated zip archive')
        if head[:1] != b'\x80':
            raise ReadError('not a PyTorch checkpoint (neither a zip archive nor a pickle stream)')
        f.seek(0)
        magic = RestrictedUnpickler(f, None).load()
        if magic != LEGACY_MAGIC:
            raise ReadError('a pickle, but not one torch.save wrote (no PyTorch magic number)')
        RestrictedUnpickler(f, None).load()            # protocol version
        sys_info = RestrictedUnpickler(f, None).load()
        if isinstance(sys_info, dict) and sys_info.get('little_endian') is False:
            raise ReadError('a big-endian checkpoint; only little-endian ones are read')
        roots = {}

        def storages(pid):
            if not (isinstance(pid, tuple) and pid and pid[0] == 'storage' and len(pid) >= 6):
                raise ReadError('an unknown persistent id (%r)' % (pid[:1],))
            _, stype, root_key, _location, numel, view = pid[:6]
            dtype, isz = _storage_type(stype)
            root_key = str(root_key)
            if root_key not in roots:
                roots[root_key] = Storage(dtype, isz, None)
                roots[root_key].numel = int(numel)
            root = roots[root_key]
            if view is not None:
                _view_key, offset, size = view
                return StorageView(root, int(offset), int(size))
            return root

        obj = RestrictedUnpickler(f, storages).load()
        keys = RestrictedUnpickler(f, None).load()
        if not isinstance(keys, list):
            raise ReadError('the storage key list is missing')
        for key in keys:
            st = roots.get(str(key))
            if st is None:
                raise ReadError("storage '%s' is listed but never used" % key)
            raw = f.read(8)
            if len(raw) != 8:
                raise ReadError('the file ends inside the storage data')
            (n,) = struct.unpack('<q', raw)
            if n < 0 or n * st.itemsize > 1 << 40:
                raise ReadError('a storage of %d elements' % n)
            data = f.read(n * st.itemsize)
            if len(data) != n * st.itemsize:
                raise ReadError('the file ends inside the storage data')
            st._data = data
        for key, st in roots.items():
            if st._data is None:
                raise ReadError("storage '%s' has no data" % key)
    return obj


def load_pickle_reader(path):
    if zipfile.is_zipfile(path):
        return read_zip(path)
    import tarfile
    if tarfile.is_tarfile(path):
        raise ReadError('a tar-format checkpoint (PyTorch < 0.4) is not supported; load and re-save it with '
                        'torch.save')
    return read_legacy(path)


# ---------------------------------------------------------------- the torch reader

def load_torch_reader(path, torch):
    import argparse as ap
    extra = [ap.Namespace]
    try:
        import numpy as np
        for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            try:
                m = __import__(mod, fromlist=['scalar'])
                extra += [m.scalar, m._reconstruct]
            except (ImportError, AttributeError):
                pass
        extra += [np.dtype, np.ndarray]
        extra += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith('DType')]
    except ImportError:
        pass
    import codecs
    extra.append(codecs.encode)
    try:
        with torch.serialization.safe_globals(extra):
            try:
                return torch.load(path, map_location='cpu', weights_only=True)
            except UnicodeDecodeError:
                return torch.load(path, map_location='cpu', weights_only=True, encoding='latin1')
    except pickle.UnpicklingError as e:
        msg = str(e).split('\n')[0]
        raise ReadError('PyTorch refused to load it with weights_only=True: %s' % msg)


# ---------------------------------------------------------------- flattening and writing

def to_record(t, torch):
    """(dtype, shape, bytes) in a dtype the safetensors reader of itrc takes."""
    if torch is not None and isinstance(t, torch.Tensor):
        t = t.detach().cpu()
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        elif t.dtype in (torch.int8, torch.uint8, torch.int16):
            t = t.int()
        names = {torch.float32: 'F32', torch.float64: 'F64', torch.int32: 'I32', torch.int64: 'I64',
                 torch.bool: 'BOOL'}
        if t.dtype not in names:
            raise ReadError('a tensor of dtype %s' % t.dtype)
        return names[t.dtype], list(t.shape), t.contiguous().numpy().tobytes()
    raw, dt = t.contiguous_bytes(), t.dtype
    if dt == 'F16':
        n = len(raw) // 2
        return 'F32', list(t.shape), struct.pack('<%df' % n, *struct.unpack('<%de' % n, raw))
    if dt == 'BF16':
        out = bytearray(len(raw) * 2)
        out[2::4], out[3::4] = raw[0::2], raw[1::2]
        return 'F32', list(t.shape), bytes(out)
    if dt in ('I8', 'U8', 'I16'):
        a = array.array({'I8': 'b', 'U8': 'B', 'I16': 'h'}[dt], raw)
        return 'I32', list(t.shape), array.array('i', a).tobytes()
    return dt, list(t.shape), raw


def is_tensor(x, torch):
    return isinstance(x, Tensor) or (torch is not None and isinstance(x, torch.Tensor))


def has_tensors(x, torch, depth=0):
    if is_tensor(x, torch):
        return True
    if depth > 3:
        return False
    if isinstance(x, dict):
        return any(has_tensors(v, torch, depth + 1) for v in x.values())
    if isinstance(x, (list, tuple)):
        return any(has_tensors(v, torch, depth + 1) for v in x)
    return False


def flatten(obj, torch):
    """Tensors of the weights by dotted path, and notes for the C side."""
    meta = {}
    root = obj
    if isinstance(obj, dict):
        for key in ('model', 'state_dict'):
            if key in obj and has_tensors(obj[key], torch):
                root = obj[key]
                meta['root'] = "checkpoint['%s']" % key
                rest = [str(k) for k in obj if k != key]
                if rest:
                    meta['not_read'] = ', '.join(rest)
                break
    out, stripped = collections.OrderedDict(), [0]

    def walk(x, prefix):
        if is_tensor(x, torch):
            name = prefix[:-1]
            if name in out:
                raise ReadError("two tensors are named '%s' (after removing DataParallel's 'module.')" % name)
            out[name] = x
        elif isinstance(x, dict):
            for k, v in x.items():
                k = str(k)
                if k.startswith('module.'):   # saved under DataParallel
                    k = k[len('module.'):]
                    stripped[0] += 1
                walk(v, prefix + k + '.')
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, prefix + str(i) + '.')
    walk(root, '')
    if stripped[0]:
        meta['module_prefix_removed'] = str(stripped[0])
    return out, meta


def write_safetensors(path, tensors, torch, meta):
    header, blobs, off = collections.OrderedDict(), [], 0
    for name, t in tensors.items():
        dt, shape, raw = to_record(t, torch)
        header[name] = {'dtype': dt, 'shape': shape, 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header['__metadata__'] = {'itr_convert.' + k: v for k, v in meta.items()}
    h = json.dumps(header).encode('utf-8')
    h += b' ' * ((8 - len(h) % 8) % 8)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.itr_convert_read.', dir=d)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(struct.pack('<Q', len(h)))
            f.write(h)
            for b in blobs:
                f.write(b)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv):
    ap = argparse.ArgumentParser(prog='itr_convert_read.py')
    ap.add_argument('--reader', choices=('auto', 'torch', 'pickle'), default='auto')
    ap.add_argument('checkpoint')
    ap.add_argument('out')
    a = ap.parse_args(argv)
    torch = None
    if a.reader in ('auto', 'torch'):
        try:
            import torch as torch_mod
            if hasattr(torch_mod.serialization, 'safe_globals'):
                torch = torch_mod
        except ImportError:
            pass
        if torch is None and a.reader == 'torch':
            print('itr-convert: --reader torch: PyTorch >= 2.5 does not import in %s' % sys.executable,
                  file=sys.stderr)
            return 1
    try:
        if not os.path.isfile(a.checkpoint):
            raise ReadError('no such file')
        obj = load_torch_reader(a.checkpoint, torch) if torch is not None else load_pickle_reader(a.checkpoint)
        tensors, meta = flatten(obj, torch)
        if not tensors:
            raise ReadError('the checkpoint holds no tensors')
        meta['reader'] = 'torch %s' % torch.__version__ if torch is not None else 'pickle (restricted, stdlib)'
        write_safetensors(a.out, tensors, torch, meta)
    except ReadError as e:
        print('itr-convert: %s: %s' % (a.checkpoint, e), file=sys.stderr)
        return 1
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            struct.error, OSError, RecursionError, RuntimeError, zipfile.BadZipFile) as e:
        print('itr-convert: %s: not a readable PyTorch checkpoint (%s: %s)'
              % (a.checkpoint, type(e).__name__, str(e).split('\n')[0]), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

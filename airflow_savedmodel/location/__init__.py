"""The filesystem layer under format/ and storage/: where model files live and what is done to them.

A :class:`Location` is one resolved place: an fsspec filesystem, a path on it, and a URL that is
safe to print (no credentials). Everything below the hook passes Locations down. One module per
job: ``places`` (resolving URLs), ``redaction`` (secrets out of messages), ``failures`` (storage
errors), ``listing``, ``files`` (reads, copies, atomic writes, staging) and ``checksums``
(crc32c, checked local copies). Their public names are all importable from here.
"""

from airflow_savedmodel.location.checksums import (
    CheckedCopy,
    RangeDigests,
    copy_local_checked,
    crc32c,
    fd_crc32c,
    file_crc32c,
    reported_crc32c,
    to_hex,
)
from airflow_savedmodel.location.failures import (
    STORAGE_LIBRARIES,
    is_storage_failure,
    is_timeout,
    storage_error,
)
from airflow_savedmodel.location.files import (
    CHUNK,
    LOCAL_CHUNK,
    copy_file,
    read_file,
    remove_quietly,
    replace_dir,
    sibling,
    write_atomic,
)
from airflow_savedmodel.location.listing import (
    Listing,
    alisting,
    children,
    file_kind_problem,
    find_fresh,
    fresh_info,
    irregular_files,
    relative_files,
    relative_infos,
    relative_sizes,
)
from airflow_savedmodel.location.places import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    Location,
    is_local,
    join,
    makedirs,
    overlap,
    protocol,
    resolve,
    url_of,
    with_timeouts,
)
from airflow_savedmodel.location.redaction import (
    SENSITIVE_KEYS,
    TOKEN_MODES,
    URL_USERINFO,
    redact,
    scrub,
    secret_values,
)

__all__ = [
    "CHUNK",
    "CheckedCopy",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "LOCAL_CHUNK",
    "Listing",
    "Location",
    "SENSITIVE_KEYS",
    "STORAGE_LIBRARIES",
    "TOKEN_MODES",
    "URL_USERINFO",
    "alisting",
    "children",
    "copy_file",
    "RangeDigests",
    "copy_local_checked",
    "crc32c",
    "fd_crc32c",
    "file_crc32c",
    "file_kind_problem",
    "find_fresh",
    "fresh_info",
    "irregular_files",
    "is_local",
    "is_storage_failure",
    "is_timeout",
    "join",
    "makedirs",
    "overlap",
    "protocol",
    "read_file",
    "redact",
    "relative_files",
    "relative_infos",
    "relative_sizes",
    "remove_quietly",
    "replace_dir",
    "reported_crc32c",
    "resolve",
    "scrub",
    "secret_values",
    "sibling",
    "storage_error",
    "to_hex",
    "url_of",
    "with_timeouts",
    "write_atomic",
]

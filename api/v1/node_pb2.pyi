from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ContainerRef(_message.Message):
    __slots__ = ("namespace", "pod", "container")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod: str
    container: str
    def __init__(self, namespace: _Optional[str] = ..., pod: _Optional[str] = ..., container: _Optional[str] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("ref", "follow", "previous", "tail_lines", "since_seconds", "timestamps", "limit_bytes")
    REF_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    SINCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    ref: ContainerRef
    follow: bool
    previous: bool
    tail_lines: int
    since_seconds: int
    timestamps: bool
    limit_bytes: int
    def __init__(self, ref: _Optional[_Union[ContainerRef, _Mapping]] = ..., follow: _Optional[bool] = ..., previous: _Optional[bool] = ..., tail_lines: _Optional[int] = ..., since_seconds: _Optional[int] = ..., timestamps: _Optional[bool] = ..., limit_bytes: _Optional[int] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class TerminalSize(_message.Message):
    __slots__ = ("width", "height")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class ExecStart(_message.Message):
    __slots__ = ("ref", "command", "stdin", "tty")
    REF_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    ref: ContainerRef
    command: _containers.RepeatedScalarFieldContainer[str]
    stdin: bool
    tty: bool
    def __init__(self, ref: _Optional[_Union[ContainerRef, _Mapping]] = ..., command: _Optional[_Iterable[str]] = ..., stdin: _Optional[bool] = ..., tty: _Optional[bool] = ...) -> None: ...

class ExecInput(_message.Message):
    __slots__ = ("start", "stdin", "stdin_close", "resize")
    START_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    STDIN_CLOSE_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    start: ExecStart
    stdin: bytes
    stdin_close: bool
    resize: TerminalSize
    def __init__(self, start: _Optional[_Union[ExecStart, _Mapping]] = ..., stdin: _Optional[bytes] = ..., stdin_close: _Optional[bool] = ..., resize: _Optional[_Union[TerminalSize, _Mapping]] = ...) -> None: ...

class ExecExit(_message.Message):
    __slots__ = ("exit_code", "message")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    message: str
    def __init__(self, exit_code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ExecOutput(_message.Message):
    __slots__ = ("stdout", "stderr", "exit")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    stdout: bytes
    stderr: bytes
    exit: ExecExit
    def __init__(self, stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit: _Optional[_Union[ExecExit, _Mapping]] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("namespace", "pod")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod: str
    def __init__(self, namespace: _Optional[str] = ..., pod: _Optional[str] = ...) -> None: ...

class ContainerUsage(_message.Message):
    __slots__ = ("name", "cpu_nano_cores", "memory_working_set_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CPU_NANO_CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_WORKING_SET_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    cpu_nano_cores: int
    memory_working_set_bytes: int
    def __init__(self, name: _Optional[str] = ..., cpu_nano_cores: _Optional[int] = ..., memory_working_set_bytes: _Optional[int] = ...) -> None: ...

class PodUsage(_message.Message):
    __slots__ = ("namespace", "name", "containers")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    containers: _containers.RepeatedCompositeFieldContainer[ContainerUsage]
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., containers: _Optional[_Iterable[_Union[ContainerUsage, _Mapping]]] = ...) -> None: ...

class NodeUsage(_message.Message):
    __slots__ = ("cpu_nano_cores", "memory_working_set_bytes", "cpu_capacity_milli", "memory_capacity_bytes")
    CPU_NANO_CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_WORKING_SET_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_CAPACITY_MILLI_FIELD_NUMBER: _ClassVar[int]
    MEMORY_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    cpu_nano_cores: int
    memory_working_set_bytes: int
    cpu_capacity_milli: int
    memory_capacity_bytes: int
    def __init__(self, cpu_nano_cores: _Optional[int] = ..., memory_working_set_bytes: _Optional[int] = ..., cpu_capacity_milli: _Optional[int] = ..., memory_capacity_bytes: _Optional[int] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("node", "pods", "timestamp_unix_nano", "window_nanos")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    WINDOW_NANOS_FIELD_NUMBER: _ClassVar[int]
    node: NodeUsage
    pods: _containers.RepeatedCompositeFieldContainer[PodUsage]
    timestamp_unix_nano: int
    window_nanos: int
    def __init__(self, node: _Optional[_Union[NodeUsage, _Mapping]] = ..., pods: _Optional[_Iterable[_Union[PodUsage, _Mapping]]] = ..., timestamp_unix_nano: _Optional[int] = ..., window_nanos: _Optional[int] = ...) -> None: ...

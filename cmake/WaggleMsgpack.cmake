# Finds msgpack-c (the C library) and defines the imported target
# waggle::msgpack, on every release the README promises:
#
#   Debian 12       msgpack-c 4  libmsgpackc.so   msgpack.pc
#   Debian 13       msgpack-c 6  libmsgpack-c.so  msgpack-c.pc
#   Ubuntu 24.04    msgpack-c 6  libmsgpack-c.so  msgpack-c.pc
#
# Why not pkg_check_modules(... IMPORTED_TARGET): msgpack-c 6's .pc file
# says 'includedir=include' (relative), and CMake refuses an imported target
# with a relative include directory.  pkg-config is therefore only a hint
# here (absolute paths only); the header and the library are found by name,
# and the version is read from the header itself.
set(WAGGLE_MSGPACK_MIN_VERSION 4.0)

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_search_module(WAGGLE_MSGPACK_PC QUIET msgpack-c msgpack)
endif()
set(_hint_inc "")
set(_hint_lib "")
foreach(_dir IN LISTS WAGGLE_MSGPACK_PC_INCLUDE_DIRS)
  if(IS_ABSOLUTE "${_dir}")
    list(APPEND _hint_inc "${_dir}")
  endif()
endforeach()
foreach(_dir IN LISTS WAGGLE_MSGPACK_PC_LIBRARY_DIRS)
  if(IS_ABSOLUTE "${_dir}")
    list(APPEND _hint_lib "${_dir}")
  endif()
endforeach()

find_path(WAGGLE_MSGPACK_INCLUDE_DIR msgpack.h HINTS ${_hint_inc})
# msgpack-c >= 6 names the library msgpack-c; 4 and older msgpackc.
find_library(WAGGLE_MSGPACK_LIBRARY NAMES msgpack-c msgpackc
             HINTS ${_hint_lib})
if(NOT WAGGLE_MSGPACK_INCLUDE_DIR OR NOT WAGGLE_MSGPACK_LIBRARY)
  message(FATAL_ERROR "msgpack-c not found (header msgpack.h: "
    "'${WAGGLE_MSGPACK_INCLUDE_DIR}', library msgpack-c or msgpackc: "
    "'${WAGGLE_MSGPACK_LIBRARY}'); install libmsgpack-c-dev (Debian 13, "
    "Ubuntu 24.04) or libmsgpack-dev (Debian 12), or run "
    "deploy/install-deps.sh")
endif()

set(_ver_h "${WAGGLE_MSGPACK_INCLUDE_DIR}/msgpack/version_master.h")
if(NOT EXISTS "${_ver_h}")
  message(FATAL_ERROR "msgpack-c: '${_ver_h}' is missing; "
    "is '${WAGGLE_MSGPACK_INCLUDE_DIR}/msgpack.h' the C library's header?")
endif()
file(STRINGS "${_ver_h}" _ver_lines
     REGEX "^#define MSGPACK_VERSION_(MAJOR|MINOR|REVISION)")
set(_ver "")
foreach(_part MAJOR MINOR REVISION)
  string(REGEX MATCH "MSGPACK_VERSION_${_part} +([0-9]+)" _m "${_ver_lines}")
  list(APPEND _ver "${CMAKE_MATCH_1}")
endforeach()
list(JOIN _ver "." WAGGLE_MSGPACK_VERSION)
if(NOT WAGGLE_MSGPACK_VERSION MATCHES "^[0-9]+\\.[0-9]+\\.[0-9]+$")
  message(FATAL_ERROR "msgpack-c: cannot read the version from '${_ver_h}' "
    "(got '${WAGGLE_MSGPACK_VERSION}')")
endif()
if(WAGGLE_MSGPACK_VERSION VERSION_LESS WAGGLE_MSGPACK_MIN_VERSION)
  message(FATAL_ERROR "msgpack-c ${WAGGLE_MSGPACK_VERSION} found in "
    "'${WAGGLE_MSGPACK_INCLUDE_DIR}'; Waggle needs "
    "${WAGGLE_MSGPACK_MIN_VERSION} or newer")
endif()
message(STATUS "msgpack-c ${WAGGLE_MSGPACK_VERSION}: "
  "${WAGGLE_MSGPACK_INCLUDE_DIR}/msgpack.h, ${WAGGLE_MSGPACK_LIBRARY}")

add_library(waggle::msgpack INTERFACE IMPORTED)
set_target_properties(waggle::msgpack PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${WAGGLE_MSGPACK_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "${WAGGLE_MSGPACK_LIBRARY}")
unset(_hint_inc)
unset(_hint_lib)
unset(_ver_h)
unset(_ver_lines)
unset(_ver)

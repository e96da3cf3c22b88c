# Fills in the @VARIABLES@ of the man pages (man/*.in) for one installation prefix. Included
# twice: by man/CMakeLists.txt at configure time (pages in the build tree, for the configured
# prefix) and by the install script (pages for the prefix `cmake --install --prefix` was given).
#
# Input: SIW_MAN_SRC (folder of the .in files), SIW_MAN_OUT (output folder), SIW_MAN_PAGES,
# SIW_MAN_PREFIX, SIW_MAN_{BIN,LIB,DOC}DIR_REL (CMAKE_INSTALL_{BIN,LIB,DOC}DIR: relative to
# the prefix, or absolute), PROJECT_VERSION, PROJECT_VERSION_MAJOR, PROJECT_VERSION_MINOR.
foreach(d BIN LIB DOC)
  if(IS_ABSOLUTE "${SIW_MAN_${d}DIR_REL}")
    set(SIW_MAN_${d}DIR "${SIW_MAN_${d}DIR_REL}")
  else()
    set(SIW_MAN_${d}DIR "${SIW_MAN_PREFIX}/${SIW_MAN_${d}DIR_REL}")
  endif()
endforeach()
set(SIW_MAN_PCDIR "${SIW_MAN_LIBDIR}/pkgconfig")
set(SIW_MAN_LIBDIR "${SIW_MAN_LIBDIR}/softiwarp")
# What siw-run looks for next to itself (tools/CMakeLists.txt computes the same).
file(RELATIVE_PATH SIW_MAN_RUN_LIBDIR "${SIW_MAN_BINDIR}" "${SIW_MAN_LIBDIR}")
foreach(page ${SIW_MAN_PAGES})
  configure_file("${SIW_MAN_SRC}/${page}.in" "${SIW_MAN_OUT}/${page}" @ONLY)
endforeach()

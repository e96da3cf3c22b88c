# Writes softiwarp.pc (from packaging/softiwarp.pc.in) for one installation prefix. Run by the
# install script (tools/CMakeLists.txt), so that the prefix `cmake --install --prefix` was given
# ends up in the file; with DESTDIR the file names the final prefix, as packages need.
#
# Input: SIW_PC_TEMPLATE, SIW_PC_OUT (file to write), SIW_PC_PREFIX, SIW_PC_LIBDIR_REL and
# SIW_PC_BINDIR_REL (CMAKE_INSTALL_LIBDIR/BINDIR: relative to the prefix, or absolute),
# PROJECT_VERSION.
foreach(d LIB BIN)
  if(IS_ABSOLUTE "${SIW_PC_${d}DIR_REL}")
    set(SIW_PC_${d}DIR "${SIW_PC_${d}DIR_REL}")
  else()
    set(SIW_PC_${d}DIR "\${exec_prefix}/${SIW_PC_${d}DIR_REL}")
  endif()
endforeach()
set(SIW_PC_LIBDIR "${SIW_PC_LIBDIR}/softiwarp")
configure_file("${SIW_PC_TEMPLATE}" "${SIW_PC_OUT}" @ONLY)

# Run by CPack after staging (CPACK_PRE_BUILD_SCRIPTS): the package installs
# under /usr, but the service's settings belong in /etc/qiao.
file(GLOB_RECURSE qiao_staged_conf "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/*/etc/qiao/qiao.conf")
foreach(conf ${qiao_staged_conf})
  get_filename_component(usr_etc "${conf}" DIRECTORY) # <stage>/usr/etc/qiao
  get_filename_component(usr_etc "${usr_etc}" DIRECTORY) # <stage>/usr/etc
  get_filename_component(usr "${usr_etc}" DIRECTORY)
  get_filename_component(stage "${usr}" DIRECTORY)
  file(MAKE_DIRECTORY "${stage}/etc")
  file(RENAME "${usr_etc}/qiao" "${stage}/etc/qiao")
  file(REMOVE_RECURSE "${usr_etc}")
endforeach()

# Man pages: help2man turns each executable's --help and --version into
# build/<preset>/man/<name>.1, so the pages never drift from the flags.
# Part of ALL when help2man is found (tools/setup installs it);
# tests/services/cli/man_pages_test.sh checks every page renders.
find_program(HELP2MAN help2man)
set(STARLING_MAN_DIR ${CMAKE_BINARY_DIR}/man)
# name|NAME-section text, one per executable with --help and --version.
set(STARLING_MAN_PAGES
  "starling|event-driven data pipelines on Kafka: run, inspect, tail and replay them"
  "starling-broker|embedded, durable, Kafka-compatible broker"
  "starling-ingest|the front door: device events over HTTP and MQTT into Kafka"
  "starling-extract|pulls records from external HTTP APIs on a schedule into Kafka"
  "starling-fake-api|simulated external APIs (a weather API) for the tests and the demo"
  "starling-clean|applies a pipeline's rules to its raw events"
  "starling-load|loads clean events into SQLite or PostgreSQL"
  "starling-saga|the saga coordinator: tracks every accepted batch until it is loaded or rejected")
set(STARLING_MAN_BINARIES "")
foreach(entry ${STARLING_MAN_PAGES})
  string(REGEX REPLACE "\\|.*" "" bin "${entry}")
  list(APPEND STARLING_MAN_BINARIES ${bin})
endforeach()

if(HELP2MAN)
  set(pages "")
  foreach(entry ${STARLING_MAN_PAGES})
    string(REGEX REPLACE "\\|.*" "" bin "${entry}")
    string(REGEX REPLACE "^[^|]*\\|" "" name "${entry}")
    set(page ${STARLING_MAN_DIR}/${bin}.1)
    # Sanitizer builds: a leak report at exit would end up in the page.
    add_custom_command(OUTPUT ${page}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${STARLING_MAN_DIR}
      COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0
              ${HELP2MAN} --no-info --name=${name} --output=${page} $<TARGET_FILE:${bin}>
      DEPENDS ${bin}
      COMMENT "help2man ${bin} > man/${bin}.1"
      VERBATIM)
    list(APPEND pages ${page})
  endforeach()
  add_custom_target(man ALL DEPENDS ${pages})
else()
  message(STATUS "help2man not found: no man pages (tools/setup installs it)")
endif()

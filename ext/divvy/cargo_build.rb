# frozen_string_literal: true

# Builds divvy's native library with cargo and copies it to OUTPUT (the
# file Ruby loads: divvy.so on Linux, divvy.bundle on macOS). Run by the
# Makefile extconf.rb writes, with the Ruby that ran extconf.rb:
#
#   ruby cargo_build.rb OUTPUT [FEATURES]
#
# cargo builds in CARGO_TARGET_DIR when it is set (`rake compile` points it
# at the checkout's target/), otherwise in a temporary directory removed
# afterwards, so an installed gem keeps only the library. A missing cargo
# or libclang is reported in one line saying what to install; any other
# failure shows cargo's output.

require 'open3'
require 'rbconfig'
require 'tmpdir'
require 'fileutils'

# What to install when bindgen (through rb-sys) cannot find libclang.
LIBCLANG_HINT = 'divvy: libclang was not found (rb-sys reads Ruby\'s headers with it): install libclang-dev ' \
                '(Debian, Ubuntu), clang-devel (Fedora), clang (Alpine, Arch) or Xcode\'s command line tools ' \
                '(macOS), or set LIBCLANG_PATH to the directory holding libclang'
# What clang-sys (under bindgen) says when it cannot find libclang.
LIBCLANG_MISSING = /Unable to find libclang|couldn't find any valid shared libraries matching: \['libclang/
# What to install when there is no cargo.
CARGO_HINT = 'divvy: cargo was not found: install the Rust toolchain (https://rustup.rs) and retry'

output, features = ARGV
root = File.expand_path('../..', __dir__)
cargo = ENV.fetch('CARGO', 'cargo')

# Runs cargo in `target_dir`; returns its combined output and status.
def cargo_build(cargo, root, target_dir, features)
  command = [cargo, 'build', '--release', '--locked', '--manifest-path', File.join(root, 'ext/divvy/Cargo.toml')]
  command += ['--features', features] unless features.to_s.empty?
  puts command.join(' ')
  env = { 'RUBY' => RbConfig.ruby, 'CARGO_TARGET_DIR' => target_dir }
  Open3.capture2e(env, *command)
rescue Errno::ENOENT
  abort CARGO_HINT
end

# Returns the message to fail with for cargo's `log`: one line when the
# cause is a missing tool, the whole log otherwise.
def failure(log)
  return LIBCLANG_HINT if log.match?(LIBCLANG_MISSING)

  "#{log}\ndivvy: cargo failed to build the native extension (see above)"
end

target_dir = ENV.fetch('CARGO_TARGET_DIR', nil)
temporary = target_dir.nil? || target_dir.empty?
target_dir = Dir.mktmpdir('divvy-cargo') if temporary
begin
  log, status = cargo_build(cargo, root, target_dir, features)
  abort failure(log) unless status.success?
  puts log.lines.last
  library = File.join(target_dir, 'release', "libdivvy.#{RbConfig::CONFIG['SOEXT']}")
  FileUtils.cp(library, output)
ensure
  FileUtils.rm_rf(target_dir) if temporary
end

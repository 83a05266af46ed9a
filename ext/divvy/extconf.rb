# frozen_string_literal: true

# Writes the Makefile that builds divvy's native core with cargo. It needs no
# rb_sys gem: cargo builds the cdylib, and `make install` copies it to
# $(sitearchdir)$(target_prefix)/divvy.so, which is where RubyGems (and
# `rake compile`) expect it.

require 'rbconfig'

root = File.expand_path('../..', __dir__)
cargo = ENV.fetch('CARGO', 'cargo')
unless system(cargo, '--version', out: File::NULL, err: File::NULL)
  abort 'divvy: cargo was not found; install the Rust toolchain (https://rustup.rs) and retry'
end

dlext = RbConfig::CONFIG['DLEXT']
File.write('Makefile', <<~MAKEFILE)
  RUBY = #{RbConfig.ruby}
  CARGO = #{cargo}
  CARGO_TARGET_DIR ?= #{root}/target
  sitearchdir = #{RbConfig::CONFIG['sitearchdir']}
  target_prefix = /divvy
  DLLIB = divvy.#{dlext}

  all: $(DLLIB)

  $(DLLIB): FORCE
  \tRUBY=$(RUBY) CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) $(CARGO) build --release --locked --manifest-path #{root}/ext/divvy/Cargo.toml
  \tcp $(CARGO_TARGET_DIR)/release/libdivvy.so $(DLLIB)

  install: $(DLLIB)
  \tmkdir -p $(DESTDIR)$(sitearchdir)$(target_prefix)
  \tcp $(DLLIB) $(DESTDIR)$(sitearchdir)$(target_prefix)/$(DLLIB)

  clean:
  \trm -f $(DLLIB)

  distclean: clean
  \trm -f Makefile

  .PHONY: all install clean distclean FORCE
MAKEFILE

# frozen_string_literal: true

# Writes the Makefile that builds divvy's native core with cargo. It needs no
# rb_sys gem: cargo_build.rb runs cargo and copies the library to divvy.DLEXT
# (divvy.so on Linux, divvy.bundle on macOS), and `make install` copies that
# to $(sitearchdir)$(target_prefix)/, which is where RubyGems (and
# `rake compile`) expect it.

require 'rbconfig'

cargo = ENV.fetch('CARGO', 'cargo')
unless system(cargo, '--version', out: File::NULL, err: File::NULL)
  abort 'divvy: cargo was not found: install the Rust toolchain (https://rustup.rs) and retry'
end

dlext = RbConfig::CONFIG['DLEXT']
File.write('Makefile', <<~MAKEFILE)
  RUBY = #{RbConfig.ruby}
  sitearchdir = #{RbConfig::CONFIG['sitearchdir']}
  target_prefix = /divvy
  DLLIB = divvy.#{dlext}
  # `portable` builds the portable fallback of every Linux-only call.
  CARGO_FEATURES =

  all: $(DLLIB)

  $(DLLIB): FORCE
  \t$(RUBY) #{__dir__}/cargo_build.rb $(DLLIB) "$(CARGO_FEATURES)"

  # RubyGems runs `make` and then `make install`: build only if `make` did not.
  install:
  \ttest -f $(DLLIB) || $(MAKE) all
  \tmkdir -p $(DESTDIR)$(sitearchdir)$(target_prefix)
  \tcp $(DLLIB) $(DESTDIR)$(sitearchdir)$(target_prefix)/$(DLLIB)

  clean:
  \trm -f $(DLLIB)

  distclean: clean
  \trm -f Makefile

  .PHONY: all install clean distclean FORCE
MAKEFILE

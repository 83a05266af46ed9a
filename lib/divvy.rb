# frozen_string_literal: true

require 'divvy/version'
require 'divvy/errors'

# Load the native core: a versioned build (as in a precompiled gem) when
# there is one, the plain build otherwise.
begin
  require "divvy/#{RUBY_VERSION[/\A\d+\.\d+/]}/divvy"
rescue LoadError
  require 'divvy/divvy'
end

require 'etc'
require 'divvy/parallelizable'
require 'divvy/map'
require 'divvy/load'
require 'divvy/shard'

# A forking parallel task runner. See Divvy::Parallelizable for the task
# interface, Divvy::Master for running one, Divvy.load, Divvy.map and
# Divvy.each.
module Divvy; end

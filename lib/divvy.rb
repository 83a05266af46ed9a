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
require 'divvy/shard'

# A forking parallel task runner. See Divvy::Parallelizable for the task
# interface and Divvy::Master for running one.
module Divvy
  # Loads a divvy script and returns a new instance of the last class it
  # defined that includes {Divvy::Parallelizable}. Runs in the master.
  #
  # @param file [String] path of the script
  # @return [Parallelizable] the task object
  # @raise [Divvy::Error] when the script defines no such class
  # @raise [LoadError, SyntaxError] when the script cannot be read or parsed;
  #   and whatever the script itself raises
  def self.load(file)
    known = Parallelizable.parallelizable.dup
    Kernel.load(File.expand_path(file))
    defined = Parallelizable.parallelizable - known
    task_class = defined.last
    raise Error, "#{file} defines no class that includes Divvy::Parallelizable" unless task_class

    task_class.new
  end
end

# frozen_string_literal: true

require 'divvy/version'

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

# A forking parallel task runner. See Divvy::Parallelizable for the task
# interface and Divvy::Master for running one.
module Divvy
  # Loads a divvy script and returns a new instance of the last class it
  # defined that includes Divvy::Parallelizable. Runs in the master.
  #
  # file - path of the script.
  #
  # Returns the task object. Raises Divvy::Error when the script defines no
  # such class, and what loading the script raises (LoadError when it cannot
  # be read, SyntaxError, or the script's own exceptions).
  def self.load(file)
    known = Parallelizable.parallelizable.dup
    Kernel.load(File.expand_path(file))
    defined = Parallelizable.parallelizable - known
    task_class = defined.last
    raise Error, "#{file} defines no class that includes Divvy::Parallelizable" unless task_class

    task_class.new
  end
end

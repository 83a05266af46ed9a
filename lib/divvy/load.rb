# frozen_string_literal: true

# Divvy.load: finding the task in a script.
module Divvy
  # Loads a divvy script and returns a new instance of its task class: the
  # one class the script defines that includes {Divvy::Parallelizable}, or,
  # when it defines several, the one named after the file (`dance_party.rb`
  # or `danceparty.rb` -> `DanceParty`, case aside; a class in a module
  # counts by its last name). Runs in the master.
  #
  # @param file [String] path of the script
  # @return [Parallelizable] the task object
  # @raise [Divvy::Error] when the script defines no such class, or several
  #   and not exactly one of them is named after the file; the message names
  #   them
  # @raise [LoadError, SyntaxError] when the script cannot be read or parsed;
  #   and whatever the script itself raises
  def self.load(file)
    known = Parallelizable.parallelizable.dup
    Kernel.load(File.expand_path(file))
    task_class(file, Parallelizable.parallelizable - known).new
  end

  # Picks the task class of `file` among the `defined` classes; see {load}.
  def self.task_class(file, defined)
    raise Error, "#{file} defines no class that includes Divvy::Parallelizable" if defined.empty?
    return defined.first if defined.size == 1

    named = defined.select { |klass| named_after?(klass, file) }
    named.size == 1 ? named.first : raise(Error, several_classes(file, defined))
  end

  # True when the last part of `klass`'s name is `file`'s name without its
  # extension, underscores and dashes, case aside.
  def self.named_after?(klass, file)
    klass.name.to_s.split('::').last.to_s.casecmp?(File.basename(file.to_s, '.*').delete('_-'))
  end

  # The message for a script that defines several task classes, none of
  # them named after the file.
  def self.several_classes(file, defined)
    names = defined.map { |klass| klass.name || klass.inspect }.join(', ')
    expected = File.basename(file.to_s, '.*').split(/[_-]/).map(&:capitalize).join
    "#{file} defines several classes that include Divvy::Parallelizable (#{names}): " \
      "name the task class after the file (#{expected})"
  end
  private_class_method :task_class, :named_after?, :several_classes
end
